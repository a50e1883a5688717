// Which types may cross a process boundary as their raw bytes, and the names used in messages.
//
// Both ends of a channel run the same executable (the handshake checks it), so a value's object
// representation means the same thing on both sides: same layout, same byte order, same padding.
// What it cannot carry is an address. So a type crosses as bytes when it holds nothing but
// numbers: arithmetic types, enums, and trivially copyable aggregates whose every member is such
// a type (recursively; C arrays of them too).
//
// C++20 has no reflection; the members of an aggregate are probed by aggregate initialisation
// (Boost.PFR's trick). `T{field<0>{}, field<1>{}, ...}` with a `field` convertible to anything
// finds how many leaves T has (C-array members are brace-elided, one initialiser per element);
// initialising T from `bitwise_field`s, which convert only to bitwise types, then fails if any
// leaf is a pointer, a reference, a std::string... Whatever this probing cannot see through
// (unions, members it cannot initialise unambiguously, const or reference members, more than
// 32 leaves) is reported "not bitwise": such a type needs a parallel::codec specialisation or
// the explicit opt-in parallel::bitwise_codec. The probe can say "no" to a harmless type; it
// does not say "yes" to a type holding a pointer it has seen.
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

namespace parallel {

template <class T>
struct codec;
template <class T>
struct bitwise_codec;

namespace detail {

/// "std::vector<int>": the type's name as the compiler spells it, for protocol-error messages.
template <class T>
constexpr std::string_view type_name() noexcept {
#if defined(__clang__) || defined(__GNUC__)
  // GCC: "... type_name() [with T = int; std::string_view = ...]"; Clang: "... [T = int]".
  constexpr std::string_view function = __PRETTY_FUNCTION__;
  constexpr std::size_t start = function.find("T = ") + 4;
  constexpr std::size_t semicolon = function.find(';', start);
  constexpr std::size_t end = semicolon != std::string_view::npos ? semicolon : function.rfind(']');
  return function.substr(start, end - start);
#else
  return "a value";
#endif
}

template <class T>
inline constexpr bool always_false = false;

namespace reflect {

inline constexpr std::size_t max_leaves = 32;

/// Converts to anything: counts the leaves of an aggregate. Declared, never defined: it only
/// appears in unevaluated requires-expressions.
template <std::size_t>
struct any_field {
  template <class U>
  operator U&() const noexcept;
};

template <class T, std::size_t... Is>
constexpr bool init_from_any(std::index_sequence<Is...>) noexcept {
  return requires { T{any_field<Is>{}...}; };
}

/// The largest n <= max_leaves for which T{any_field...(n times)} compiles.
template <class T, std::size_t N = max_leaves>
constexpr std::size_t leaf_count() noexcept {
  if constexpr (init_from_any<T>(std::make_index_sequence<N>{})) {
    return N;
  } else if constexpr (N == 0) {
    return 0;  // not even T{}: a member without a default initialiser the probe could not feed
  } else {
    return leaf_count<T, N - 1>();
  }
}

/// True when T can still take an initialiser after N leaves: the count stopped early (a member
/// the probe cannot convert to), so the members behind it are unseen.
template <class T, std::size_t... Is>
constexpr bool takes_more(std::index_sequence<Is...>) noexcept {
  return requires { T{any_field<Is>{}..., {}}; }
  || requires { T{any_field<Is>{}..., {any_field<0>{}}}; };
}

}  // namespace reflect

template <class T>
constexpr bool is_bitwise() noexcept;

namespace reflect {

/// Converts only to types that cross as bytes.
template <std::size_t>
struct bitwise_field {
  template <class U>
  requires(is_bitwise<U>()) operator U&() const noexcept;
};

template <class T, std::size_t... Is>
constexpr bool leaves_are_bitwise(std::index_sequence<Is...>) noexcept {
  return requires { T{bitwise_field<Is>{}...}; };
}

template <class T>
constexpr bool aggregate_is_bitwise() noexcept {
  // Reference and const members make the copy assignment deleted: excluded here, before any
  // probing (a reference member would otherwise be bound by any_field like an object).
  if constexpr (!std::is_aggregate_v<T> || std::is_union_v<T> || !std::is_trivially_copyable_v<T> ||
                !std::is_copy_assignable_v<T>) {
    return false;
  } else {
    constexpr std::size_t leaves = leaf_count<T>();
    if constexpr (leaves == max_leaves || takes_more<T>(std::make_index_sequence<leaves>{})) {
      return false;
    } else if constexpr (leaves == 0) {
      return std::is_empty_v<T>;
    } else {
      return leaves_are_bitwise<T>(std::make_index_sequence<leaves>{});
    }
  }
}

}  // namespace reflect

/// Arithmetic, enum, or a trivially copyable aggregate of those: crosses by memcpy on its own,
/// without any declaration (C arrays are not values and never cross on their own).
/// Pointers, member pointers, references, functions, nullptr_t and void are none of these.
template <class T>
constexpr bool is_plain_bitwise() noexcept {
  constexpr bool qualified_or_array =
      std::is_const_v<T> || std::is_volatile_v<T> || std::is_array_v<T>;
  if constexpr (!qualified_or_array && std::is_class_v<T>) {
    return reflect::aggregate_is_bitwise<T>();
  } else {
    return !qualified_or_array && (std::is_arithmetic_v<T> || std::is_enum_v<T>);
  }
}

/// is_plain_bitwise, or opted in with `struct parallel::codec<T> : parallel::bitwise_codec<T>`
/// (asked last: codec<T>'s own definition asks is_plain_bitwise<T>).
template <class T>
constexpr bool is_bitwise() noexcept {
  if constexpr (is_plain_bitwise<T>()) {
    return true;
  } else if constexpr (std::is_class_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>) {
    return std::is_base_of_v<bitwise_codec<T>, codec<T>>;
  } else {
    return false;
  }
}

}  // namespace detail
}  // namespace parallel
