// The codec (codec.hpp): what crosses a process boundary comes back equal, whatever its nesting;
// types without a default constructor and move-only types decode; user codecs, bitwise opt-ins
// and cereal types work; and bytes that were truncated, forged or corrupted are refused with
// parallel::error ("parallel: protocol error: ...") without crashing or allocating what a forged
// length asks for (run it under ASan/UBSan: the build with PARALLEL_SANITIZE does).
#include <array>
#include <bitset>
#include <chrono>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <parallel/parallel.hpp>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "catch.hpp"

namespace {

enum class colour : std::uint8_t { red, green, blue };
enum old_style { first = 1, second = 2 };

struct point {  // a trivially copyable aggregate: crosses as its bytes
  double x, y;
  colour c;
  bool operator==(const point&) const = default;
};

struct grid {  // C arrays and nested aggregates are looked through too
  int cells[2][3];
  point origin;
  bool operator==(const grid&) const = default;
};

struct empty {
  bool operator==(const empty&) const = default;
};

struct node {  // holds an address: must not cross
  int value;
  node* next;
};

/// No default constructor, a user codec.
class money {
 public:
  money(long cents, std::string currency) : cents_(cents), currency_(std::move(currency)) {}
  long cents() const { return cents_; }
  const std::string& currency() const { return currency_; }
  bool operator==(const money&) const = default;

 private:
  long cents_;
  std::string currency_;
};

/// Trivially copyable with private members: the library cannot look in, so it is opted in.
class rgb {
 public:
  constexpr rgb(std::uint8_t r, std::uint8_t g, std::uint8_t b) : r_(r), g_(g), b_(b) {}
  bool operator==(const rgb&) const = default;

 private:
  std::uint8_t r_, g_, b_;
};

/// A user codec that writes nothing: fine alone, refused as a container's element (its count
/// could not be checked against the bytes left).
struct silent {
  std::string note;  // not trivially copyable: only the codec below makes it cross
  bool operator==(const silent&) const = default;
};

/// Records the largest single allocation, to prove a forged length allocates nothing.
struct allocations {
  static inline std::size_t largest = 0;
};
template <class T>
struct counting_allocator {
  using value_type = T;
  counting_allocator() = default;
  template <class U>
  counting_allocator(const counting_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    allocations::largest = std::max(allocations::largest, n * sizeof(T));
    return std::allocator<T>{}.allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>{}.deallocate(p, n); }
  template <class U>
  bool operator==(const counting_allocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace

namespace parallel {
template <>
struct codec<money> {
  static void encode(encoder& out, const money& m) {
    out.write(m.cents());
    out.write(m.currency());
  }
  static money decode(decoder& in) {
    const auto cents = in.read<long>();
    return money{cents, in.read<std::string>()};
  }
};
template <>
struct codec<rgb> : bitwise_codec<rgb> {};
template <>
struct codec<silent> {
  static void encode(encoder&, const silent&) {}
  static silent decode(decoder&) { return {}; }
};
}  // namespace parallel

namespace {

std::vector<std::byte> encode(const auto& value) {
  parallel::encoder out;
  out.write(value);
  return out.take();
}

template <class T>
T round_trip(const T& value) {
  const std::vector<std::byte> bytes = encode(value);
  parallel::decoder in{bytes};
  T result = in.read<T>();
  REQUIRE(in.done());
  return result;
}

template <class T>
void check_round_trip(const T& value) {
  REQUIRE(round_trip(value) == value);
}

bool is_protocol_error(const parallel::error& e) {
  return std::string_view{e.what()}.starts_with("parallel: protocol error:");
}

/// Decodes every strict prefix of value's encoding: each must throw a protocol error.
template <class T>
void every_truncation_throws(const T& value) {
  const std::vector<std::byte> bytes = encode(value);
  std::size_t refused = 0;
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    parallel::decoder in{std::span{bytes}.first(cut)};
    try {
      static_cast<void>(in.read<T>());
    } catch (const parallel::error& e) {
      if (is_protocol_error(e)) ++refused;
    }
  }
  REQUIRE(refused == bytes.size());
}

template <class T>
std::string error_of(std::span<const std::byte> bytes) {
  parallel::decoder in{bytes};
  try {
    static_cast<void>(in.read<T>());
  } catch (const parallel::error& e) {
    REQUIRE(is_protocol_error(e));
    return e.what();
  }
  return "";
}

std::vector<std::byte> length_prefix(std::uint64_t length) {
  parallel::encoder out;
  out.write_size(length);
  return out.take();
}

using nested = std::vector<std::map<std::string, std::optional<std::tuple<int, double>>>>;

nested sample_nested() {
  return {{{"a", std::tuple{1, 2.5}}, {"", std::nullopt}},
          {},
          {{"long key with some length to it", std::tuple{-7, 1e300}}}};
}

}  // namespace

TEST_CASE("codec: what may cross and what may not is known at compile time", "[codec]") {
  static_assert(parallel::transferable<int>);
  static_assert(parallel::transferable<colour>);
  static_assert(parallel::transferable<point>);
  static_assert(parallel::transferable<grid>);
  static_assert(parallel::transferable<empty>);
  static_assert(parallel::transferable<money>);
  static_assert(parallel::transferable<rgb>);
  static_assert(parallel::transferable<nested>);
  static_assert(parallel::transferable<std::unique_ptr<std::vector<money>>>);
  static_assert(parallel::transferable<std::variant<std::monostate, int, std::string>>);

  static_assert(!parallel::transferable<int*>);
  static_assert(!parallel::transferable<int&>);
  static_assert(!parallel::transferable<const int>);
  static_assert(!parallel::transferable<void (*)()>);
  static_assert(!parallel::transferable<int point::*>);
  static_assert(!parallel::transferable<node>);
  static_assert(!parallel::transferable<std::array<node*, 2>>);
  static_assert(!parallel::transferable<std::thread>);
  static_assert(!parallel::transferable<std::string_view>);
  static_assert(!parallel::transferable<std::vector<std::thread>>);
  static_assert(!parallel::transferable<std::map<int, std::optional<node>>>);
  static_assert(!parallel::transferable<std::shared_ptr<int>>);
  static_assert(!parallel::transferable<decltype([] { return 1; })>);
  // Aggregates of numbers cross as one memcpy; containers of them too.
  static_assert(parallel::detail::crosses_as_bytes<grid>);
  static_assert(parallel::codec<std::vector<point>>::bulk);
  static_assert(!parallel::codec<std::vector<bool>>::bulk);
}

TEST_CASE("codec: numbers, enums and aggregates come back equal", "[codec]") {
  check_round_trip(std::int8_t{-128});
  check_round_trip(std::uint16_t{65535});
  check_round_trip(std::int32_t{-123456789});
  check_round_trip(std::numeric_limits<std::uint64_t>::max());
  check_round_trip(3.25f);
  check_round_trip(-1e-300);
  check_round_trip('x');
  check_round_trip(true);
  check_round_trip(false);
  check_round_trip(colour::blue);
  check_round_trip(second);
  check_round_trip(std::byte{0xAB});
  check_round_trip(point{1.5, -2.5, colour::green});
  check_round_trip(grid{{{1, 2, 3}, {4, 5, 6}}, {0.5, 0.25, colour::red}});
  check_round_trip(empty{});
  check_round_trip(rgb{1, 2, 3});
  check_round_trip(std::chrono::milliseconds{1234});
  REQUIRE(encode(std::int32_t{1}).size() == 4);
  REQUIRE(encode(point{}).size() == sizeof(point));
}

TEST_CASE("codec: strings and sequences come back equal, empty or not", "[codec]") {
  check_round_trip(std::string{});
  check_round_trip(std::string{"with\0nul", 8});
  check_round_trip(std::string(100000, 'z'));
  check_round_trip(std::wstring{L"wide"});
  check_round_trip(std::vector<int>{});
  check_round_trip(std::vector<int>{1, -2, 3});
  check_round_trip(std::vector<bool>{true, false, true, true});
  check_round_trip(std::vector<std::string>{"", "a", "bc"});
  check_round_trip(std::vector<point>{{1, 2, colour::red}, {3, 4, colour::blue}});
  check_round_trip(std::vector<std::vector<int>>{{}, {1}, {2, 3}});
  check_round_trip(std::array<int, 4>{1, 2, 3, 4});
  check_round_trip(std::array<std::string, 2>{"x", "yz"});
  check_round_trip(std::array<int, 0>{});
  // Bulk: one 8-byte count and the elements' bytes, nothing per element.
  REQUIRE(encode(std::vector<std::int32_t>(10)).size() == 8 + 40);
}

TEST_CASE("codec: large vectors and strings come back equal, aligned in the buffer or not",
          "[codec]") {
  // Past detail::populate_from the decoder maps the result's pages in before its copy.
  constexpr std::size_t large = parallel::detail::populate_from * 3 + 100;
  std::vector<double> doubles(large / sizeof(double));
  for (std::size_t i = 0; i < doubles.size(); ++i) doubles[i] = 0.5 * static_cast<double>(i);
  check_round_trip(doubles);
  check_round_trip(std::string(large, 'q'));
  std::u32string wide(large / sizeof(char32_t), U'\u00e9');
  wide.back() = U'z';
  check_round_trip(wide);
  check_round_trip(std::vector<char, counting_allocator<char>>(large, 'c'));

  // After one byte, the elements' bytes are not aligned for a double: decoded by a copy.
  std::vector<std::byte> frame;
  parallel::encoder out{frame};
  out.write(std::uint8_t{7});
  out.write(doubles);
  out.write(wide);
  parallel::decoder in{frame};
  REQUIRE(in.read<std::uint8_t>() == 7);
  REQUIRE(in.read<std::vector<double>>() == doubles);
  REQUIRE(in.read<std::u32string>() == wide);
  REQUIRE(in.done());
}

TEST_CASE("codec: pairs, tuples, optionals, variants and smart pointers", "[codec]") {
  check_round_trip(std::pair<int, std::string>{7, "seven"});
  check_round_trip(std::tuple<>{});
  check_round_trip(std::tuple<int, std::string, double>{1, "two", 3.0});
  check_round_trip(std::optional<std::string>{});
  check_round_trip(std::optional<std::string>{"here"});
  using variant = std::variant<std::monostate, int, std::string, std::vector<double>>;
  check_round_trip(variant{});
  check_round_trip(variant{42});
  check_round_trip(variant{std::string{"text"}});
  check_round_trip(variant{std::vector<double>{1.0, 2.0}});
  check_round_trip(std::variant<int, int>{std::in_place_index<1>, 5});
  REQUIRE(round_trip(std::variant<int, int>{std::in_place_index<1>, 5}).index() == 1);

  REQUIRE(round_trip(std::unique_ptr<std::string>{}) == nullptr);
  const auto p = round_trip(std::make_unique<std::string>("owned"));
  REQUIRE(p != nullptr);
  REQUIRE(*p == "owned");
}

TEST_CASE("codec: maps and sets come back equal", "[codec]") {
  check_round_trip(std::map<std::string, int>{});
  check_round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}});
  check_round_trip(std::multimap<int, int>{{1, 1}, {1, 2}, {0, 3}});
  check_round_trip(std::unordered_map<int, std::vector<std::string>>{{1, {"x"}}, {2, {}}});
  check_round_trip(std::set<std::string>{"b", "a"});
  check_round_trip(std::multiset<int>{3, 3, 1});
  check_round_trip(std::unordered_set<long>{5, 6, 7});
}

TEST_CASE("codec: deque, list, time points, complex, bitset and paths come back equal", "[codec]") {
  static_assert(parallel::transferable<std::deque<std::string>>);
  static_assert(parallel::transferable<std::list<std::vector<int>>>);
  static_assert(!parallel::transferable<std::list<int*>>);
  check_round_trip(std::deque<int>{});
  check_round_trip(std::deque<std::string>{"a", "", "bcd"});
  check_round_trip(std::list<int>{3, 1, 2});
  check_round_trip(std::list<std::vector<int>>{{}, {1, 2}});
  check_round_trip(std::chrono::system_clock::now());
  check_round_trip(std::chrono::steady_clock::now());
  check_round_trip(std::chrono::sys_days{std::chrono::days{20000}});
  check_round_trip(std::complex<double>{1.5, -2.25});
  check_round_trip(std::complex<float>{0.0F, 3.0F});
  check_round_trip(std::vector<std::complex<double>>{{1, 2}, {3, 4}});
  check_round_trip(std::bitset<0>{});
  check_round_trip(std::bitset<5>{"10110"});
  check_round_trip(std::bitset<64>{0x8000'0000'0000'0001ULL});
  check_round_trip(std::bitset<100>{}.set(0).set(63).set(64).set(99));
  REQUIRE(encode(std::bitset<100>{}).size() == 13);  // eight bits to a byte
  check_round_trip(std::filesystem::path{});
  check_round_trip(std::filesystem::path{"/tmp/a b/c.txt"});
  check_round_trip(std::filesystem::path{"relative/dir/"});
  every_truncation_throws(std::list<std::string>{"x", "yz"});
  every_truncation_throws(std::complex<double>{1, 2});
  every_truncation_throws(std::bitset<20>{0xABCDE});
  every_truncation_throws(std::filesystem::path{"/p"});
}

namespace {
// Aggregates with no codec written: they cross member by member.
struct employee {
  std::string name;
  int age = 0;
  std::vector<std::string> skills;
  std::map<std::string, double> scores;
  std::optional<std::string> manager;
  friend bool operator==(const employee&, const employee&) = default;
};
struct team {
  employee lead;
  std::vector<employee> members;
  point where{};  // itself bitwise
  std::chrono::milliseconds meeting{};
  friend bool operator==(const team&, const team&) = default;
};
struct priced {
  std::string item;
  money price;  // no default constructor, a user codec: decoded by aggregate initialisation
  friend bool operator==(const priced&, const priced&) = default;
};
struct with_base : employee {
  int extra = 0;
};
struct with_array {
  std::string name;
  int marks[3];
};
struct with_reference {
  std::string name;
  const int& ref;
};
struct with_pointer {
  std::string name;
  int* where;
};
struct tree {
  int value = 0;
  std::vector<tree> children;
};
}  // namespace

TEST_CASE("codec: an aggregate whose members all cross crosses with no codec written", "[codec]") {
  static_assert(parallel::transferable<employee>);
  static_assert(parallel::transferable<team>);
  static_assert(parallel::transferable<priced>);
  static_assert(parallel::transferable<std::vector<team>>);
  // What the member probe cannot see through stays "cannot cross", with the usual advice.
  static_assert(!parallel::transferable<with_base>);
  static_assert(!parallel::transferable<with_array>);
  static_assert(!parallel::transferable<with_reference>);
  static_assert(!parallel::transferable<with_pointer>);  // a member that cannot cross
  static_assert(!parallel::transferable<tree>);          // a member that needs tree itself
  const employee ada{"Ada", 36, {"maths", "engines"}, {{"notes", 9.5}}, std::nullopt};
  const employee bob{"", 0, {}, {}, "Ada"};
  check_round_trip(ada);
  check_round_trip(team{ada, {bob, ada}, {1, 2, colour::blue}, std::chrono::milliseconds(30)});
  check_round_trip(std::vector<employee>{ada, bob});
  check_round_trip(priced{"tea", money{350, "EUR"}});
  // Its members' encodings, one after the other: no header, no padding.
  REQUIRE(encode(ada).size() == encode(ada.name).size() + encode(ada.age).size() +
                                    encode(ada.skills).size() + encode(ada.scores).size() +
                                    encode(ada.manager).size());
  every_truncation_throws(ada);
}

TEST_CASE("codec: nested any way", "[codec]") {
  check_round_trip(sample_nested());
  check_round_trip(nested{});
  using deep =
      std::map<int, std::vector<std::variant<point, std::optional<std::set<std::string>>>>>;
  check_round_trip(deep{{1, {point{1, 2, colour::red}, std::optional<std::set<std::string>>{}}},
                        {2, {std::optional<std::set<std::string>>{{"s", "t"}}}}});
}

TEST_CASE("codec: user codecs, types without a default constructor, move-only results", "[codec]") {
  check_round_trip(money{1999, "EUR"});
  // Containers and wrappers build them directly: no default constructor is ever needed.
  check_round_trip(std::vector<money>{{1, "USD"}, {2, "JPY"}});
  check_round_trip(std::optional<money>{money{3, "GBP"}});
  check_round_trip(std::array<money, 2>{money{4, "CHF"}, money{5, "SEK"}});
  check_round_trip(std::tuple<money, int>{money{6, "NOK"}, 6});
  check_round_trip(std::map<std::string, money>{{"k", money{7, "DKK"}}});

  std::vector<std::unique_ptr<money>> owned;
  owned.push_back(std::make_unique<money>(8, "PLN"));
  owned.push_back(nullptr);
  const auto back = round_trip(owned);
  REQUIRE(back.size() == 2);
  REQUIRE(*back[0] == money{8, "PLN"});
  REQUIRE(back[1] == nullptr);
}

TEST_CASE("codec: several values in one buffer, an encoder appending to a caller's buffer",
          "[codec]") {
  std::vector<std::byte> frame(3, std::byte{0xFF});  // e.g. a header written before
  parallel::encoder out{frame};
  out.write(std::string{"job"});
  out.write(17);
  out.write(std::vector<double>{0.5});
  REQUIRE(frame.size() > 3);

  parallel::decoder in{std::span{frame}.subspan(3)};
  REQUIRE(in.read<std::string>() == "job");
  REQUIRE(in.read<int>() == 17);
  REQUIRE_FALSE(in.done());
  REQUIRE(in.read<std::vector<double>>() == std::vector<double>{0.5});
  REQUIRE(in.done());
  REQUIRE(in.remaining() == 0);
}

#if __has_include(<cereal/cereal.hpp>)
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

namespace {
struct reading {  // a cereal member serialize
  std::string sensor;
  std::vector<double> values;
  int id = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(sensor, values, id);
  }
  bool operator==(const reading&) const = default;
};

struct split {  // cereal save + load, free functions
  std::string text;
  bool operator==(const split&) const = default;
};
template <class Archive>
void save(Archive& archive, const split& s) {
  archive(s.text);
}
template <class Archive>
void load(Archive& archive, split& s) {
  archive(s.text);
}
}  // namespace

TEST_CASE("codec: a type with a cereal serialize or save/load crosses through cereal",
          "[codec][cereal]") {
  static_assert(parallel::detail::cereal_type<reading>);
  static_assert(parallel::transferable<reading>);
  static_assert(parallel::transferable<split>);
  check_round_trip(reading{"thermometer", {20.5, 21.0}, 3});
  check_round_trip(reading{});
  check_round_trip(split{"free functions"});
  check_round_trip(std::vector<reading>{{"a", {1}, 1}, {"b", {}, 2}});
  every_truncation_throws(reading{"thermometer", {20.5, 21.0}, 3});
}
#endif

TEST_CASE("codec: every truncation of a valid encoding is a protocol error", "[codec]") {
  every_truncation_throws(std::int64_t{5});
  every_truncation_throws(std::string{"hello"});
  every_truncation_throws(std::vector<int>{1, 2, 3});
  every_truncation_throws(std::vector<bool>{true, false});
  every_truncation_throws(std::array<std::string, 2>{"a", "b"});
  every_truncation_throws(std::variant<int, std::string>{"v"});
  every_truncation_throws(std::unordered_map<int, std::string>{{1, "a"}, {2, "b"}});
  every_truncation_throws(money{1, "EUR"});
  every_truncation_throws(sample_nested());

  // The message says what was being decoded.
  const std::vector<std::byte> bytes = encode(std::vector<int>{1, 2, 3});
  const std::string message = error_of<std::vector<int>>(std::span{bytes}.first(10));
  REQUIRE_THAT(message, Catch::Matchers::Contains("std::vector<int"));
}

TEST_CASE("codec: a forged length is refused before anything is allocated", "[codec]") {
  const std::uint64_t huge = std::uint64_t{1} << 60;
  using counted_ints = std::vector<int, counting_allocator<int>>;
  using counted_strings = std::vector<std::string, counting_allocator<std::string>>;
  using counted_string = std::basic_string<char, std::char_traits<char>, counting_allocator<char>>;
  allocations::largest = 0;
  for (const std::uint64_t length : {huge, std::numeric_limits<std::uint64_t>::max(),
                                     std::uint64_t{5}}) {  // 5 chars need 5 bytes; 4 are left
    std::vector<std::byte> bytes = length_prefix(length);
    bytes.resize(bytes.size() + 4);
    REQUIRE_THAT(error_of<counted_ints>(bytes), Catch::Matchers::Contains("claims"));
    REQUIRE_THAT(error_of<counted_strings>(bytes), Catch::Matchers::Contains("claims"));
    REQUIRE_THAT(error_of<counted_string>(bytes), Catch::Matchers::Contains("claims"));
    REQUIRE_FALSE(error_of<std::map<std::string, std::string>>(bytes).empty());
    REQUIRE_FALSE(error_of<std::unordered_set<int>>(bytes).empty());
  }
  REQUIRE(allocations::largest == 0);

  // Inside a valid outer structure: a vector of one string whose own length is forged.
  std::vector<std::byte> bytes = length_prefix(1);
  const std::vector<std::byte> inner = length_prefix(huge);
  bytes.insert(bytes.end(), inner.begin(), inner.end());
  REQUIRE_THAT(error_of<std::vector<std::string>>(bytes), Catch::Matchers::Contains("claims"));
}

// Found by tests/fuzz/fuzz_codec (tests/fuzz/regressions/codec-zero-size-elements-*): values
// that encoded to no bytes at all made a container's count unchecked (10^9 elements from
// 128 KiB) and made the decoder refuse the encoder's own output.
TEST_CASE("codec: values with nothing to say still take a byte, so every count stays bounded",
          "[codec]") {
  using ms = std::monostate;
  check_round_trip(std::vector<std::vector<ms>>{{ms{}, ms{}}, {}, {ms{}}});
  check_round_trip(std::vector<std::tuple<>>(3));
  check_round_trip(std::vector<std::array<int, 0>>(2));
  check_round_trip(std::map<int, ms>{{1, ms{}}, {2, ms{}}});
  check_round_trip(std::set<std::tuple<>>{std::tuple<>{}});
  check_round_trip(std::pair<ms, ms>{});
  every_truncation_throws(std::vector<std::vector<ms>>{{ms{}, ms{}}, {ms{}}});
  // A count the bytes left cannot pay for is refused, as for any other element.
  REQUIRE_FALSE(error_of<std::vector<ms>>(length_prefix(1'000'000'000)).empty());
  REQUIRE_FALSE(error_of<std::vector<std::vector<ms>>>(length_prefix(64)).empty());
  // A user codec that writes nothing crosses alone, and is a clear error inside a container.
  check_round_trip(silent{});
  parallel::encoder out;
  try {
    out.write(std::vector<silent>(3));
    FAIL("a vector of elements that take no bytes was encoded");
  } catch (const parallel::error& e) {
    CHECK(std::string_view{e.what()}.find("takes no bytes") != std::string_view::npos);
  }
}

TEST_CASE("codec: a bad variant index or flag byte is a protocol error", "[codec]") {
  using variant = std::variant<int, std::string>;
  std::vector<std::byte> bytes = encode(variant{5});
  bytes[0] = std::byte{2};
  REQUIRE_THAT(error_of<variant>(bytes), Catch::Matchers::Contains("index 2"));
  bytes[0] = std::byte{0xFF};
  REQUIRE_FALSE(error_of<variant>(bytes).empty());

  std::vector<std::byte> flag = encode(std::optional<int>{1});
  flag[0] = std::byte{7};
  REQUIRE_THAT(error_of<std::optional<int>>(flag), Catch::Matchers::Contains("flag byte 7"));
  REQUIRE_FALSE(error_of<bool>(flag).empty());
  REQUIRE_FALSE(error_of<std::unique_ptr<int>>(flag).empty());
}

TEST_CASE("codec: corrupted bytes decode or throw a protocol error, never anything else",
          "[codec]") {
  using message = std::tuple<nested, std::vector<std::variant<int, std::string, point>>,
                             std::map<int, std::optional<std::vector<money>>>, std::set<long>>;
  const message value{sample_nested(),
                      {1, std::string{"two"}, point{3, 4, colour::blue}},
                      {{1, std::vector<money>{{5, "EUR"}}}, {2, std::nullopt}},
                      {9, 8, 7}};
  const std::vector<std::byte> valid = encode(value);
  std::mt19937_64 random{20240607};  // fixed: a failure replays
  std::size_t decoded = 0;
  std::size_t refused = 0;
  for (int round = 0; round < 3000; ++round) {
    std::vector<std::byte> bytes = valid;
    const int flips = 1 + static_cast<int>(random() % 4);
    for (int i = 0; i < flips; ++i) {
      bytes[random() % bytes.size()] = static_cast<std::byte>(random());
    }
    parallel::decoder in{bytes};
    try {
      static_cast<void>(in.read<message>());
      ++decoded;
    } catch (const parallel::error& e) {
      REQUIRE(is_protocol_error(e));
      ++refused;
    }
  }
  // Both outcomes occur: mutations of lengths and tags are caught, of payload bytes are not.
  REQUIRE(refused > 0);
  REQUIRE(decoded > 0);
}
