// libFuzzer target for the codec's decoders (codec.hpp, detail/codec/std_types.hpp): any bytes,
// decoded as any built-in type, either throw parallel::error("parallel: protocol error: ...") or
// give a value that survives encode -> decode unchanged. Anything else aborts: a crash, a
// sanitizer report, another exception, a value that does not round-trip, an allocation that
// libFuzzer's -malloc_limit_mb / -rss_limit_mb finds absurd for the bytes given.
//
// Input layout (make_corpus.cpp writes seeds in it):
//   byte 0     which type: an index into fuzz::fuzzed_types (fuzz_codec_types.hpp), modulo
//   byte 1     bits 0-2: how far past a 16-byte boundary the rest is placed, so that both the
//              aligned and the unaligned paths of the bulk decoders run
//   the rest   values of that type, one after another: each is decoded and checked in turn
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <source_location>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "fuzz_codec_types.hpp"

namespace {

void require(bool ok, const char* what,
             std::source_location where = std::source_location::current()) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_codec: %s:%u: %s\n", where.file_name(),
               static_cast<unsigned>(where.line()), what);
  std::abort();
}

// --- equality that holds for NaN and owning pointers --------------------------------------------
// operator== is false for a NaN and compares unique_ptrs by address; a decoded value must equal
// its round trip bit for bit.

template <class T>
bool same(const T& a, const T& b);

template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};

template <class T>
struct is_std_vector : std::false_type {};
template <class T, class A>
struct is_std_vector<std::vector<T, A>> : std::true_type {};

template <class T>
struct is_product : std::false_type {};
template <class A, class B>
struct is_product<std::pair<A, B>> : std::true_type {};
template <class... Ts>
struct is_product<std::tuple<Ts...>> : std::true_type {};

template <class T>
struct is_variant : std::false_type {};
template <class... Ts>
struct is_variant<std::variant<Ts...>> : std::true_type {};

template <class T>
struct is_optional_like : std::false_type {};
template <class T>
struct is_optional_like<std::optional<T>> : std::true_type {};
template <class T>
struct is_optional_like<std::unique_ptr<T>> : std::true_type {};

template <class T>
bool same(const T& a, const T& b) {
  if constexpr (std::is_floating_point_v<T> || std::is_same_v<T, fuzz::sample>) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;  // NaN payloads and -0.0 included
  } else if constexpr ((is_std_vector<T>::value && !std::is_same_v<T, std::vector<bool>>) ||
                       is_std_array<T>::value) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!same(a[i], b[i])) return false;
    }
    return true;
  } else if constexpr (is_product<T>::value) {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return (same(std::get<I>(a), std::get<I>(b)) && ...);
    }
    (std::make_index_sequence<std::tuple_size_v<T>>{});
  } else if constexpr (is_variant<T>::value) {
    if (a.index() != b.index()) return false;
    return std::visit(
        [&b](const auto& x) { return same(x, std::get<std::decay_t<decltype(x)>>(b)); }, a);
  } else if constexpr (is_optional_like<T>::value) {
    if (static_cast<bool>(a) != static_cast<bool>(b)) return false;
    return !a || same(*a, *b);
  } else {
    return a == b;  // numbers without NaN, strings, maps and sets (none holds a float here)
  }
}

// --- one type --------------------------------------------------------------------------------

std::string_view text(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

template <class T>
std::vector<std::byte> encode(const T& value) {
  parallel::encoder out;
  out.write(value);
  return out.take();
}

/// Decodes values of T from `input` until it is used up or refused, checking each one.
template <class Fuzzed>
void decode_all(std::span<const std::byte> input) {
  using T = typename Fuzzed::type;
  parallel::decoder in{input};
  while (!in.done()) {
    const std::size_t start = input.size() - in.remaining();
    std::optional<T> value;
    try {
      value.emplace(in.read<T>());
    } catch (const parallel::error& e) {
      require(std::string_view{e.what()}.starts_with("parallel: protocol error: "),
              "a decoding error that is not a protocol error");
      return;  // the input is refused: expected, and the end of it
    }
    const std::span<const std::byte> consumed =
        input.subspan(start, input.size() - in.remaining() - start);

    // Encode it again: the same bytes, or (containers that sort or deduplicate) no more of them.
    const std::vector<std::byte> again = encode(*value);
    if constexpr (Fuzzed::how == fuzz::order::exact) {
      require(text(again) == text(consumed), "re-encoding differs from the bytes decoded");
    } else {
      require(again.size() <= consumed.size(), "re-encoding is longer than the bytes decoded");
    }

    // Decode that: no error, every byte used, the same value, and from now on the same bytes.
    parallel::decoder round{again};
    std::optional<T> back;
    try {
      back.emplace(round.read<T>());
    } catch (const parallel::error& e) {
      std::fprintf(stderr, "fuzz_codec: decoding what the encoder wrote threw: %s\n", e.what());
      require(false, "the decoder refuses the encoder's own bytes");
    }
    require(round.done(), "a re-encoded value leaves trailing bytes");
    require(same(*value, *back), "a value differs after encode -> decode");
    if constexpr (Fuzzed::how != fuzz::order::unordered) {
      require(text(encode(*back)) == text(again), "encoding is not stable after one round trip");
    }
  }
}

template <std::size_t... I>
constexpr auto make_decoders(std::index_sequence<I...>) {
  using decode_fn = void (*)(std::span<const std::byte>);
  return std::array<decode_fn, sizeof...(I)>{
      &decode_all<std::tuple_element_t<I, fuzz::fuzzed_types>>...};
}

constexpr auto decoders = make_decoders(std::make_index_sequence<fuzz::fuzzed_count>{});

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t which = data[0] % fuzz::fuzzed_count;
  const std::size_t shift = data[1] & 7u;
  const std::size_t length = size - 2;

  // A fresh exact-size buffer per input, so that ASan sees a read past the end of the input.
  // new[] of std::byte is aligned to __STDCPP_DEFAULT_NEW_ALIGNMENT__ (16).
  const std::unique_ptr<std::byte[]> buffer(new std::byte[shift + length]);
  if (length != 0) std::memcpy(buffer.get() + shift, data + 2, length);
  decoders[which](std::span<const std::byte>(buffer.get() + shift, length));
  return 0;
}
