// Writes the seed corpora of the fuzzers, with the library's own encoders, into
// <dir>/frame/ (fuzz_frame.cpp) and <dir>/codec/ (fuzz_codec.cpp). Regenerate them from the
// repository's root with either of:
//
//   c++ -std=c++20 -Iinclude tests/fuzz/make_corpus.cpp -o /tmp/make_corpus &&
//     /tmp/make_corpus tests/fuzz/corpus
//   cmake --build build --target fuzz_make_corpus &&
//     build/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
//
// Files are overwritten by name; one that is no longer written here must be deleted by hand.
// The output is the same on every run (no randomness, no time), so the checked-in files only
// change when this program or the formats do.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <parallel/codec.hpp>
#include <parallel/detail/ipc/frame.hpp>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "fuzz_codec_types.hpp"

namespace {

namespace fs = std::filesystem;
namespace ipc = parallel::detail::ipc;
using bytes = std::vector<std::byte>;

void write_file(const fs::path& path, const bytes& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(content.data()),
            static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("make_corpus: cannot write " + path.string());
}

bytes text(std::string_view s) {
  bytes out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

// --- fuzz_frame: control byte, piece sizes, stream ----------------------------------------------

constexpr std::uint8_t repair_checksums = 0x10;
constexpr std::uint8_t refuse_some_shutdowns = 0x20;
constexpr std::uint8_t small_limit = 0x40;  // 64 bytes
constexpr std::uint8_t finish_before_draining = 0x80;

/// A piece of `size` bytes (127: all that is left), then next() if `drain`.
std::uint8_t piece(unsigned size, bool drain) {
  return static_cast<std::uint8_t>(size << 1 | (drain ? 1u : 0u));
}

bytes frame_seed(std::uint8_t flags, std::initializer_list<std::uint8_t> pieces,
                 const bytes& stream) {
  if (pieces.size() > 15) throw std::logic_error("make_corpus: at most 15 piece sizes");
  bytes out;
  out.push_back(std::byte(static_cast<std::uint8_t>(flags | pieces.size())));
  for (std::uint8_t p : pieces) out.push_back(std::byte(p));
  out.insert(out.end(), stream.begin(), stream.end());
  return out;
}

void append(bytes& stream, ipc::frame_type type, std::uint64_t task_id, const bytes& payload,
            ipc::frame_flags flags = ipc::frame_flags::none) {
  ipc::append_frame(stream, type, flags, task_id, payload);
}

template <class T>
bytes encoded(const T& value) {
  parallel::encoder out;
  out.write(value);
  return out.take();
}

void write_frame_seeds(const fs::path& dir) {
  using ipc::frame_type;
  {
    bytes s;
    append(s, frame_type::hello, 0, text("hello"));
    write_file(dir / "one_frame", frame_seed(0, {}, s));
  }
  {
    bytes s;
    append(s, frame_type::task, 1, encoded(std::vector<int>{1, 2, 3}));
    append(s, frame_type::result, 1, encoded(std::string("six")));
    append(s, frame_type::heartbeat, 2, {});
    write_file(dir / "three_frames_split",
               frame_seed(0, {piece(5, true), piece(40, false), piece(127, true)}, s));
  }
  {
    bytes s;
    for (std::uint16_t t = 1; t <= ipc::last_frame_type; ++t) {
      append(s, static_cast<frame_type>(t), t * 1000u, bytes(t % 3, std::byte{0x5A}));
    }
    write_file(dir / "every_type_byte_by_byte", frame_seed(0, {piece(1, true)}, s));
  }
  {
    bytes s;
    append(s, frame_type::task, 7, {}, ipc::frame_flags::payload_on_channel);
    append(s, frame_type::doorbell, 0, {});
    append(s, frame_type::task, 7, text("the task itself"));
    append(s, frame_type::result, 7, {}, ipc::frame_flags::payload_on_channel);
    write_file(dir / "payload_on_channel", frame_seed(0, {piece(3, true)}, s));
  }
  {
    bytes s;
    append(s, frame_type::result, 3, text("complete"));
    append(s, frame_type::result, 4, text("cut short here"));
    s.resize(s.size() - 6);
    write_file(dir / "truncated", frame_seed(finish_before_draining, {piece(20, true)}, s));
  }
  {
    bytes s;
    append(s, frame_type::task, 5, text("fine"));
    append(s, frame_type::task, 6, text("corrupted header"));
    s[ipc::header_size + 4 + 12] ^= std::byte{0x01};  // the second header's checksum
    write_file(dir / "bad_checksum", frame_seed(0, {piece(3, false), piece(31, true)}, s));
  }
  {
    bytes s;
    append(s, frame_type::result, 8, bytes(64, std::byte{0x11}));  // at the limit: accepted
    append(s, frame_type::result, 9, bytes(65, std::byte{0x22}));  // over it: refused
    write_file(dir / "over_small_limit", frame_seed(small_limit, {}, s));
  }
  {
    // Fields no encoder writes, behind checksums that fuzz_frame recomputes (they are left
    // stale here): an unknown type, then a result with a flag no encoder sets (bit 0, retired).
    bytes s;
    append(s, frame_type::task, 10, text("ok"));
    bytes forged;
    append(forged, frame_type::task, 11, {});
    ipc::wire::store<std::uint16_t>(forged.data() + 6, ipc::last_frame_type + 1);
    s.insert(s.end(), forged.begin(), forged.end());
    write_file(dir / "unknown_type_repaired", frame_seed(repair_checksums, {}, s));

    s.clear();
    append(s, frame_type::result, 12, text("17 bytes of stuff"));
    ipc::wire::store<std::uint32_t>(s.data() + 8, 1);
    write_file(dir / "retired_flag_repaired", frame_seed(repair_checksums, {piece(8, true)}, s));
  }
  {
    bytes s;
    append(s, frame_type::heartbeat, 1, {});
    append(s, frame_type::shutdown, 3, {});  // refused by the fuzzer's check_headers callback
    write_file(dir / "refused_shutdown", frame_seed(refuse_some_shutdowns, {piece(32, true)}, s));
  }
}

// --- fuzz_codec: selector byte, alignment byte, values -------------------------------------------

template <class T>
void codec_seed(const fs::path& dir, std::string_view name, std::uint8_t shift, const T& first,
                const std::optional<T>& second = std::nullopt) {
  bytes out{std::byte{fuzz::selector_of<T>()}, std::byte{shift}};
  const bytes a = encoded(first);
  out.insert(out.end(), a.begin(), a.end());
  if (second) {
    const bytes b = encoded(*second);
    out.insert(out.end(), b.begin(), b.end());
  }
  write_file(dir / name, out);
}

template <class T>
std::unique_ptr<T> owned(T value) {
  return std::make_unique<T>(std::move(value));
}

void write_codec_seeds(const fs::path& dir) {
  using fuzz::level;
  using fuzz::sample;
  using namespace std::string_literals;
  const sample s1{.score = 2.5,
                  .id = 42,
                  .weight = -1.0f,
                  .cells = {{1, -2, 3}, {-4, 5, -6}},
                  .flags = 0x8001,
                  .delta = -7,
                  .kind = 200};
  const sample s2{.score = -0.0,
                  .id = -1,
                  .weight = std::numeric_limits<float>::infinity(),
                  .cells = {},
                  .flags = 0,
                  .delta = 127,
                  .kind = 0};

  codec_seed<std::int8_t>(dir, "int8", 0, -5, 100);
  codec_seed<std::uint8_t>(dir, "uint8", 0, 250);
  codec_seed<std::int16_t>(dir, "int16", 1, -30000, 2);
  codec_seed<std::uint16_t>(dir, "uint16", 0, 65535);
  codec_seed<std::int32_t>(dir, "int32", 3, std::numeric_limits<std::int32_t>::min(), 7);
  codec_seed<std::uint32_t>(dir, "uint32", 0, 0xDEADBEEF);
  codec_seed<std::int64_t>(dir, "int64", 0, -1, std::numeric_limits<std::int64_t>::max());
  codec_seed<std::uint64_t>(dir, "uint64", 5, 1ull << 63);
  codec_seed<char>(dir, "char", 0, 'x', '\0');
  codec_seed<float>(dir, "float", 0, 3.25f, std::numeric_limits<float>::quiet_NaN());
  codec_seed<double>(dir, "double", 0, -1e300, std::numeric_limits<double>::denorm_min());
  codec_seed<bool>(dir, "bool", 0, true, false);
  codec_seed<level>(dir, "enum", 0, level::high, level::low);
  codec_seed<std::string>(dir, "string", 0, "parallel"s, ""s);
  codec_seed<std::u32string>(dir, "u32string_aligned", 0, U"\u00e9t\u00e9"s);
  codec_seed<std::u32string>(dir, "u32string_unaligned", 1, U"x"s);
  codec_seed<std::vector<int>>(dir, "vector_int", 0, {1, -2, 3, 1 << 30});
  codec_seed<std::vector<int>>(dir, "vector_int_unaligned", 3, {7, 8});
  codec_seed<std::vector<double>>(dir, "vector_double", 0, {0.5, -0.0, 1e-300});
  codec_seed<std::vector<std::string>>(dir, "vector_string", 0, {"a", "", "bc"});
  codec_seed<std::vector<bool>>(dir, "vector_bool", 0, {true, false, true});
  codec_seed<std::array<int, 3>>(dir, "array_int_3", 0, {9, 8, 7});
  codec_seed<std::array<std::string, 2>>(dir, "array_string_2", 0, {"left", "right"});
  codec_seed<std::pair<int, std::string>>(dir, "pair", 0, {1, "one"});
  codec_seed<std::tuple<int, std::string, double>>(dir, "tuple", 0, {2, "two", 2.0});
  codec_seed<std::optional<std::string>>(dir, "optional_string", 0, "here"s, std::nullopt);
  codec_seed<std::variant<int, std::string, std::vector<int>>>(dir, "variant", 0, "alt 1"s,
                                                               std::vector<int>{4, 5});
  codec_seed<std::map<std::string, int>>(dir, "map_string_int", 0, {{"a", 1}, {"b", 2}});
  codec_seed<std::unordered_map<int, std::string>>(dir, "unordered_map_int_string", 0,
                                                   {{3, "three"}});
  codec_seed<std::set<int>>(dir, "set_int", 0, {-1, 0, 1});
  codec_seed<std::multiset<std::string>>(dir, "multiset_string", 0, {"x", "x", "y"});
  codec_seed<std::unordered_set<std::int64_t>>(dir, "unordered_set_int64", 0, {10, 20});
  codec_seed<std::multimap<int, std::string>>(dir, "multimap_int_string", 0,
                                              {{1, "b"}, {1, "a"}, {2, "c"}});
  codec_seed<std::unique_ptr<int>>(dir, "unique_ptr_int", 0, owned(17));
  codec_seed<std::unique_ptr<std::string>>(dir, "unique_ptr_string", 0, owned("boxed"s));
  codec_seed<std::chrono::milliseconds>(dir, "milliseconds", 0, std::chrono::milliseconds{1500});
  codec_seed<sample>(dir, "aggregate", 0, s1, s2);
  codec_seed<std::vector<sample>>(dir, "vector_aggregate", 0, {s1, s2});
  codec_seed<std::vector<std::map<std::string, std::vector<int>>>>(dir, "nested", 0,
                                                                   {{{"k", {1, 2}}, {"", {}}}, {}});
  codec_seed<std::optional<std::variant<std::monostate, level, sample>>>(
      dir, "optional_variant_monostate", 0, std::variant<std::monostate, level, sample>{s1},
      std::variant<std::monostate, level, sample>{});
  codec_seed<std::vector<std::vector<std::monostate>>>(dir, "vector_vector_monostate", 0,
                                                       {{}, {std::monostate{}, std::monostate{}}});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <corpus dir>   (writes <dir>/frame/ and <dir>/codec/)\n";
    return 2;
  }
  try {
    const fs::path root = argv[1];
    fs::create_directories(root / "frame");
    fs::create_directories(root / "codec");
    write_frame_seeds(root / "frame");
    write_codec_seeds(root / "codec");
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
  }
}
