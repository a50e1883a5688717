// parallel::codec for the standard library's value types. Each is constrained on what it holds,
// so transferable<std::vector<std::thread>> is false rather than an error deep inside.
//
// Encodings: a container is a 64-bit count then its elements; a vector or string of bitwise
// elements is one memcpy; optional is a 0/1 byte then the value; variant a 32-bit index then the
// alternative; unique_ptr like optional. Decoding builds every value from what it read (braced
// initialisation reads left to right), so elements need no default constructor, and a
// container's count is checked against the bytes left before its memory is reserved.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <bitset>
#include <chrono>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "../no_result.hpp"
#include "../platform.hpp"
#include "fallback.hpp"

namespace parallel {
namespace detail {

/// The fewest bytes a T's encoding takes (0 when its codec does not say): a count of n elements
/// needs n * max(1, this) bytes left.
template <class T>
constexpr std::size_t min_size() noexcept {
  if constexpr (requires {
                  { codec<T>::min_size } -> std::convertible_to<std::size_t>;
                }) {
    return codec<T>::min_size;
  } else {
    return 0;
  }
}

/// T crosses as its bytes, so an array of T crosses as one memcpy.
template <class T>
inline constexpr bool crosses_as_bytes = std::is_base_of_v<bitwise_codec<T>, codec<T>>;

/// A decoded vector or string this large is copied into memory that is likely fresh from the
/// kernel (malloc maps large blocks; a map's results are all alive at once), where the copy's
/// cost is a page fault per 4 KiB: its pages are mapped in with one call first. Below, the
/// call costs more than the faults it saves on memory malloc reuses (a warm 256 KiB: +5 us;
/// a fresh one: about -0.3 ms).
inline constexpr std::size_t populate_from = std::size_t{256} * 1024;

/// Reserves room for `size` Ts in `c` (a vector or a string) and, when that is large, maps its
/// pages in ahead of the copy that fills it.
template <class Container>
void reserve_for_copy(Container& c, std::size_t size) {
  using value = typename Container::value_type;
  c.reserve(size);
  if (size >= populate_from / sizeof(value)) os::populate_for_write(c.data(), size * sizeof(value));
}

/// Value k of a block of values that cross as bytes.
template <class T>
T value_in_block(const std::byte* block, std::size_t k) noexcept {
  alignas(T) std::byte raw[sizeof(T)];
  std::memcpy(raw, block + k * sizeof(T), sizeof(T));
  return std::bit_cast<T>(raw);
}

/// How many elements to reserve for a count already checked by read_size: never more memory than
/// the bytes left, so that elements that encode smaller than they are cannot multiply it.
template <class T>
std::size_t reserve_hint(std::size_t count, std::size_t bytes_left) noexcept {
  return std::min(count, bytes_left / sizeof(T) + 1);
}

/// A value whose encoding would be empty (std::monostate, std::tuple<>, std::array<T, 0>) is one
/// 0 byte instead: a container's count is checked against the bytes left (decoder::read_size),
/// which bounds nothing if its elements take no bytes.
inline void write_placeholder(encoder& out) {
  const std::uint8_t zero = 0;
  out.write_bytes(&zero, 1);
}

/// For an element type whose codec does not promise a size (min_size 0: a user codec), a
/// container checks that each element took at least one byte, on both sides.
template <class T>
void require_progress(std::size_t before, std::size_t after) {
  if constexpr (min_size<T>() == 0) {
    if (before == after) {
      protocol_error("an element of type " + std::string(type_name<T>()) +
                     " in a container takes no bytes; its codec must write at least one (and "
                     "should say so with min_size)");
    }
  }
}

[[noreturn]] inline void bad_flag(std::uint8_t flag, std::string_view what) {
  protocol_error(std::string(what) + " has flag byte " + std::to_string(flag) + " (not 0 or 1)");
}

inline bool read_flag(decoder& in, std::string_view what) {
  std::uint8_t flag = 0;
  in.read_bytes(&flag, 1, what);
  if (flag > 1) bad_flag(flag, what);
  return flag == 1;
}

inline void read_placeholder(decoder& in, std::string_view what) {
  if (read_flag(in, what)) bad_flag(1, what);
}

/// set, multiset, unordered_set: a count, then the keys.
template <class Set>
struct set_codec {
  static constexpr std::size_t min_size = sizeof(std::uint64_t);

  static void encode(encoder& out, const Set& set) {
    out.write_size(set.size());
    for (const auto& key : set) {
      const std::size_t before = out.bytes().size();
      out.write(key);
      require_progress<typename Set::key_type>(before, out.bytes().size());
    }
  }
  static Set decode(decoder& in) {
    using key = typename Set::key_type;
    const std::size_t count = in.read_size(detail::min_size<key>(), type_name<Set>());
    Set set;
    if constexpr (requires { set.reserve(count); }) {
      set.reserve(reserve_hint<key>(count, in.remaining()));
    }
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t before = in.remaining();
      key k = in.read<key>();
      require_progress<key>(before, in.remaining());
      set.insert(set.end(), std::move(k));
    }
    return set;
  }
};

/// map, multimap, unordered_map: a count, then key, value, key, value...
template <class Map>
struct map_codec {
  static constexpr std::size_t min_size = sizeof(std::uint64_t);

  static void encode(encoder& out, const Map& map) {
    out.write_size(map.size());
    for (const auto& [key, value] : map) {
      const std::size_t before = out.bytes().size();
      out.write(key);
      out.write(value);
      if constexpr (detail::min_size<typename Map::key_type>() +
                        detail::min_size<typename Map::mapped_type>() ==
                    0) {
        require_progress<typename Map::mapped_type>(before, out.bytes().size());
      }
    }
  }
  static Map decode(decoder& in) {
    using key = typename Map::key_type;
    using mapped = typename Map::mapped_type;
    const std::size_t count =
        in.read_size(std::max<std::size_t>(1, detail::min_size<key>() + detail::min_size<mapped>()),
                     type_name<Map>());
    Map map;
    if constexpr (requires { map.reserve(count); }) {
      map.reserve(reserve_hint<typename Map::value_type>(count, in.remaining()));
    }
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t before = in.remaining();
      key k = in.read<key>();  // in this order: a function's arguments have none
      mapped v = in.read<mapped>();
      if constexpr (detail::min_size<key>() + detail::min_size<mapped>() == 0) {
        require_progress<mapped>(before, in.remaining());
      }
      map.emplace_hint(map.end(), std::move(k), std::move(v));
    }
    return map;
  }
};

/// deque, list: a count, then the elements.
template <class Sequence>
struct sequence_codec {
  static constexpr std::size_t min_size = sizeof(std::uint64_t);
  using element = typename Sequence::value_type;

  static void encode(encoder& out, const Sequence& sequence) {
    out.write_size(sequence.size());
    for (const auto& x : sequence) {
      const std::size_t before = out.bytes().size();
      out.write(x);
      require_progress<element>(before, out.bytes().size());
    }
  }
  static Sequence decode(decoder& in) {
    const std::size_t count = in.read_size(detail::min_size<element>(), type_name<Sequence>());
    Sequence sequence;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t before = in.remaining();
      sequence.push_back(in.read<element>());
      require_progress<element>(before, in.remaining());
    }
    return sequence;
  }
};

}  // namespace detail

template <>
struct codec<bool> {
  static constexpr std::size_t min_size = 1;
  static void encode(encoder& out, bool value) {
    const auto byte = static_cast<std::uint8_t>(value);
    out.write_bytes(&byte, 1);
  }
  static bool decode(decoder& in) { return detail::read_flag(in, "bool"); }
};

template <>
struct codec<std::monostate> {
  static constexpr std::size_t min_size = 1;
  static void encode(encoder& out, std::monostate) { detail::write_placeholder(out); }
  static std::monostate decode(decoder& in) {
    detail::read_placeholder(in, "std::monostate");
    return {};
  }
};

/// What a function returning void sends back (no_result.hpp): one placeholder byte.
template <>
struct codec<detail::no_result> {
  static constexpr std::size_t min_size = 1;
  static void encode(encoder& out, detail::no_result) { detail::write_placeholder(out); }
  static detail::no_result decode(decoder& in) {
    detail::read_placeholder(in, "the result of a function returning void");
    return {};
  }
};

template <class C, class Traits, class Alloc>
requires detail::crosses_as_bytes<C>
struct codec<std::basic_string<C, Traits, Alloc>> {
  using string = std::basic_string<C, Traits, Alloc>;
  static constexpr std::size_t min_size = sizeof(std::uint64_t);

  static void encode(encoder& out, const string& s) {
    out.write_size(s.size());
    out.write_bytes(s.data(), s.size() * sizeof(C));
  }
  static string decode(decoder& in) {
    const std::size_t size = in.read_size(sizeof(C), detail::type_name<string>());
    const std::span<const std::byte> bytes =
        in.read_span(size * sizeof(C), detail::type_name<string>());
    string s;
    detail::reserve_for_copy(s, size);
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(C) == 0) {
      s.append(std::launder(reinterpret_cast<const C*>(bytes.data())), size);
    } else {
      s.resize(size);
      if (size != 0) std::memcpy(s.data(), bytes.data(), bytes.size());
    }
    return s;
  }
};

template <class T, class Alloc>
requires transferable<T>
struct codec<std::vector<T, Alloc>> {
  using vector = std::vector<T, Alloc>;
  static constexpr std::size_t min_size = sizeof(std::uint64_t);
  // One memcpy each way. vector<bool> is not an array of bool: its elements go one by one.
  static constexpr bool bulk =
      detail::crosses_as_bytes<T> && std::default_initializable<T> && !std::is_same_v<T, bool>;

  static void encode(encoder& out, const vector& v) {
    out.write_size(v.size());
    if constexpr (bulk) {
      out.write_bytes(v.data(), v.size() * sizeof(T));
    } else {
      for (const auto& x : v) {
        const std::size_t before = out.bytes().size();
        out.write(static_cast<const T&>(x));
        detail::require_progress<T>(before, out.bytes().size());
      }
    }
  }
  static vector decode(decoder& in) {
    constexpr std::string_view name = detail::type_name<vector>();
    if constexpr (bulk) {
      const std::size_t size = in.read_size(sizeof(T), name);
      const std::span<const std::byte> bytes = in.read_span(size * sizeof(T), name);
      vector v;
      detail::reserve_for_copy(v, size);
      if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) == 0) {
        // Copy from the bytes in place: one pass over the vector's memory, not a zero-fill and
        // then a copy (for large results the first touch of the vector is the cost).
        const T* first = std::launder(reinterpret_cast<const T*>(bytes.data()));
        v.assign(first, first + size);
      } else {
        v.resize(size);
        if (size != 0) std::memcpy(v.data(), bytes.data(), bytes.size());
      }
      return v;
    } else {
      const std::size_t size = in.read_size(detail::min_size<T>(), name);
      vector v;
      v.reserve(detail::reserve_hint<T>(size, in.remaining()));
      for (std::size_t i = 0; i < size; ++i) {
        const std::size_t before = in.remaining();
        v.push_back(in.read<T>());
        detail::require_progress<T>(before, in.remaining());
      }
      return v;
    }
  }
};

template <class T, std::size_t N>
requires transferable<T>
struct codec<std::array<T, N>> {
  using array = std::array<T, N>;
  static constexpr std::size_t min_size = N == 0 ? 1 : N * detail::min_size<T>();
  static constexpr bool bulk =
      detail::crosses_as_bytes<T> && std::default_initializable<T> && !std::is_same_v<T, bool>;

  static void encode(encoder& out, const array& a) {
    if constexpr (N == 0) {
      detail::write_placeholder(out);
    } else if constexpr (bulk) {
      out.write_bytes(a.data(), N * sizeof(T));
    } else {
      for (const T& x : a) out.write(x);
    }
  }
  static array decode(decoder& in) {
    if constexpr (N == 0) {
      detail::read_placeholder(in, detail::type_name<array>());
      return {};
    } else if constexpr (bulk) {
      array a;
      in.read_bytes(a.data(), N * sizeof(T), detail::type_name<array>());
      return a;
    } else {
      return [&in]<std::size_t... I>(std::index_sequence<I...>) {
        return array{(static_cast<void>(I), in.read<T>())...};
      }
      (std::make_index_sequence<N>{});
    }
  }
};

template <class A, class B>
requires transferable<A> && transferable<B>
struct codec<std::pair<A, B>> {
  static constexpr std::size_t min_size = detail::min_size<A>() + detail::min_size<B>();
  static void encode(encoder& out, const std::pair<A, B>& p) {
    out.write(p.first);
    out.write(p.second);
  }
  static std::pair<A, B> decode(decoder& in) { return {in.read<A>(), in.read<B>()}; }
};

template <class... Ts>
requires(transferable<Ts>&&...) struct codec<std::tuple<Ts...>> {
  static constexpr std::size_t min_size =
      sizeof...(Ts) == 0 ? 1 : (std::size_t{0} + ... + detail::min_size<Ts>());
  static void encode(encoder& out, const std::tuple<Ts...>& t) {
    if constexpr (sizeof...(Ts) == 0) detail::write_placeholder(out);
    std::apply([&](const Ts&... xs) { (out.write(xs), ...); }, t);
  }
  static std::tuple<Ts...> decode([[maybe_unused]] decoder& in) {
    if constexpr (sizeof...(Ts) == 0) detail::read_placeholder(in, "std::tuple<>");
    return std::tuple<Ts...>{in.read<Ts>()...};
  }
};

template <class T>
requires transferable<T>
struct codec<std::optional<T>> {
  static constexpr std::size_t min_size = 1;
  static void encode(encoder& out, const std::optional<T>& o) {
    out.write(o.has_value());
    if (o) out.write(*o);
  }
  static std::optional<T> decode(decoder& in) {
    if (!detail::read_flag(in, detail::type_name<std::optional<T>>())) return std::nullopt;
    return std::optional<T>{std::in_place, in.read<T>()};
  }
};

/// Presence, then the pointee: the pointer's value stays behind, the object crosses. Not for a
/// polymorphic T: only its static type's part would cross.
template <class T>
requires transferable<T> &&(!std::is_polymorphic_v<T>)struct codec<std::unique_ptr<T>> {
  static constexpr std::size_t min_size = 1;
  static void encode(encoder& out, const std::unique_ptr<T>& p) {
    out.write(p != nullptr);
    if (p) out.write(*p);
  }
  static std::unique_ptr<T> decode(decoder& in) {
    if (!detail::read_flag(in, detail::type_name<std::unique_ptr<T>>())) return nullptr;
    return std::make_unique<T>(in.read<T>());
  }
};

template <class... Ts>
requires(transferable<Ts>&&...) struct codec<std::variant<Ts...>> {
  using variant = std::variant<Ts...>;
  static constexpr std::size_t min_size = sizeof(std::uint32_t);

  static void encode(encoder& out, const variant& v) {
    if (v.valueless_by_exception()) {
      throw error("parallel: cannot send a " + std::string(detail::type_name<variant>()) +
                  " that is valueless by exception");
    }
    out.write(static_cast<std::uint32_t>(v.index()));
    std::visit([&out](const auto& x) { out.write(x); }, v);
  }
  static variant decode(decoder& in) {
    const auto index = in.read<std::uint32_t>();
    if (index >= sizeof...(Ts)) {
      detail::protocol_error(std::string(detail::type_name<variant>()) + " has index " +
                             std::to_string(index) + " but only " + std::to_string(sizeof...(Ts)) +
                             " alternatives");
    }
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      using reader = variant (*)(decoder&);
      constexpr reader readers[] = {[](decoder& d) {
        return variant{std::in_place_index<I>, d.read<std::variant_alternative_t<I, variant>>()};
      }...};
      return readers[index](in);
    }
    (std::index_sequence_for<Ts...>{});
  }
};

template <class Rep, class Period>
requires transferable<Rep>
struct codec<std::chrono::duration<Rep, Period>> {
  using duration = std::chrono::duration<Rep, Period>;
  static constexpr std::size_t min_size = detail::min_size<Rep>();
  static void encode(encoder& out, const duration& d) { out.write(d.count()); }
  static duration decode(decoder& in) { return duration{in.read<Rep>()}; }
};

/// A time point crosses as its duration since its clock's epoch: right for the clocks every
/// process of one machine shares (system_clock, steady_clock); across machines (MPI) only
/// system_clock's epoch is common.
template <class Clock, class Duration>
requires transferable<Duration>
struct codec<std::chrono::time_point<Clock, Duration>> {
  using time_point = std::chrono::time_point<Clock, Duration>;
  static constexpr std::size_t min_size = detail::min_size<Duration>();
  static void encode(encoder& out, const time_point& t) { out.write(t.time_since_epoch()); }
  static time_point decode(decoder& in) { return time_point{in.read<Duration>()}; }
};

template <class T>
requires transferable<T>
struct codec<std::complex<T>> {
  static constexpr std::size_t min_size = 2 * detail::min_size<T>();
  static void encode(encoder& out, const std::complex<T>& z) {
    out.write(z.real());
    out.write(z.imag());
  }
  static std::complex<T> decode(decoder& in) {
    const T re = in.read<T>();
    return {re, in.read<T>()};
  }
};

/// N bits, eight to a byte (the first bit is the lowest of the first byte).
template <std::size_t N>
struct codec<std::bitset<N>> {
  static constexpr std::size_t bytes = N == 0 ? 1 : (N + 7) / 8;
  static constexpr std::size_t min_size = bytes;
  static void encode(encoder& out, const std::bitset<N>& bits) {
    std::array<std::uint8_t, bytes> packed{};
    for (std::size_t i = 0; i < N; ++i)
      if (bits[i]) packed[i / 8] = static_cast<std::uint8_t>(packed[i / 8] | (1U << (i % 8)));
    out.write_bytes(packed.data(), bytes);
  }
  static std::bitset<N> decode(decoder& in) {
    std::array<std::uint8_t, bytes> packed{};
    in.read_bytes(packed.data(), bytes, detail::type_name<std::bitset<N>>());
    std::bitset<N> bits;
    for (std::size_t i = 0; i < N; ++i) bits[i] = ((packed[i / 8] >> (i % 8)) & 1U) != 0;
    return bits;
  }
};

template <class T, class A>
requires transferable<T>
struct codec<std::deque<T, A>> : detail::sequence_codec<std::deque<T, A>> {
};
template <class T, class A>
requires transferable<T>
struct codec<std::list<T, A>> : detail::sequence_codec<std::list<T, A>> {
};

/// A path crosses as its native string (both ends are one executable, so one platform).
template <>
struct codec<std::filesystem::path> {
  static constexpr std::size_t min_size = sizeof(std::uint64_t);
  static void encode(encoder& out, const std::filesystem::path& path) { out.write(path.native()); }
  static std::filesystem::path decode(decoder& in) {
    return std::filesystem::path(in.read<std::filesystem::path::string_type>());
  }
};

template <class K, class C, class A>
requires transferable<K>
struct codec<std::set<K, C, A>> : detail::set_codec<std::set<K, C, A>> {
};
template <class K, class C, class A>
requires transferable<K>
struct codec<std::multiset<K, C, A>> : detail::set_codec<std::multiset<K, C, A>> {
};
template <class K, class H, class E, class A>
requires transferable<K>
struct codec<std::unordered_set<K, H, E, A>> : detail::set_codec<std::unordered_set<K, H, E, A>> {
};

template <class K, class V, class C, class A>
requires transferable<K> && transferable<V>
struct codec<std::map<K, V, C, A>> : detail::map_codec<std::map<K, V, C, A>> {
};
template <class K, class V, class C, class A>
requires transferable<K> && transferable<V>
struct codec<std::multimap<K, V, C, A>> : detail::map_codec<std::multimap<K, V, C, A>> {
};
template <class K, class V, class H, class E, class A>
requires transferable<K> && transferable<V>
struct codec<std::unordered_map<K, V, H, E, A>>
    : detail::map_codec<std::unordered_map<K, V, H, E, A>> {
};

}  // namespace parallel
