// Aggregates that cross member by member, with no codec written: a struct of strings, vectors,
// maps, nested structs... is encoded as its members in declaration order and decoded by
// aggregate initialisation from them.
//
// C++20 has no reflection. The members are counted by aggregate initialisation (Boost.PFR's
// idea, as in bitwise.hpp) and reached by a structured binding of that many names. A structured
// binding of the wrong count is a hard error, not a substitution failure, so the count must be
// right before one is written: it is trusted only when
//  - T{member_field...} compiles with n fields and not with n + 1, where member_field converts
//    to anything but a base of T (so a base class, whose initialiser comes first, stops the
//    count at 0: structured bindings cannot see into bases);
//  - each of the n initialisers can be put in braces ({field} or {}) with the count unchanged:
//    a C array member takes one initialiser per element without braces (brace elision), but
//    all of its elements from one in braces, which leaves the count too high;
//  - T is copy-assignable (no reference or const members).
// Anything else is not reflected, and stays "cannot cross" with the usual advice.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "std_types.hpp"

namespace parallel::detail::reflect {

inline constexpr std::size_t max_fields = 24;

/// Converts to anything but a base of T (or T). Declared, never defined.
template <class T, std::size_t>
struct member_field {
  template <class U>
  requires(!std::is_base_of_v<std::remove_cv_t<U>, T>) operator U&() const noexcept;
};

/// Converts only to a base of T: T{base_field<T>{}} compiles when T's first aggregate element is
/// a base class (bases come before members).
template <class T>
struct base_field {
  template <class U>
  requires(std::is_base_of_v<std::remove_cv_t<U>, T> && !std::is_same_v<std::remove_cv_t<U>, T>)
  operator U&() const noexcept;
};

template <class T, std::size_t... Is>
constexpr bool init_from_fields(std::index_sequence<Is...>) noexcept {
  return requires { T{member_field<T, Is>{}...}; };
}

/// The largest n <= max_fields + 1 for which T{member_field...(n times)} compiles.
template <class T, std::size_t N = max_fields + 1>
constexpr std::size_t field_count() noexcept {
  if constexpr (N == 0 || init_from_fields<T>(std::make_index_sequence<N>{})) {
    return N;
  } else {
    return field_count<T, N - 1>();
  }
}

/// True when member K (of N initialisers) takes one initialiser in braces, as {field} or {}: a
/// C array of more than one element starting at K would take them all, and the N initialisers
/// would then be too many.
template <class T, std::size_t... Is, std::size_t... Js>
constexpr bool braced_at(std::index_sequence<Is...>, std::index_sequence<Js...>) noexcept {
  constexpr std::size_t k = sizeof...(Is);
  constexpr bool with_field = requires {
    T{member_field<T, Is>{}..., {member_field<T, k>{}}, member_field<T, Js>{}...};
  };
  constexpr bool empty = requires { T{member_field<T, Is>{}..., {}, member_field<T, Js>{}...}; };
  return with_field || empty;
}

template <class T, std::size_t N, std::size_t... Ks>
constexpr bool no_array_member(std::index_sequence<Ks...>) noexcept {
  return (braced_at<T>(std::make_index_sequence<Ks>{}, std::make_index_sequence<N - Ks - 1>{}) &&
          ...);
}

/// True when T's members can be reached by a structured binding of field_count<T>() names.
template <class T>
constexpr bool reflectable() noexcept {
  if constexpr (!std::is_class_v<T> || !std::is_aggregate_v<T> || std::is_union_v<T> ||
                std::is_const_v<T> || std::is_volatile_v<T> || !std::is_copy_assignable_v<T>) {
    return false;
  } else {
    constexpr std::size_t n = field_count<T>();
    constexpr bool has_base = requires { T{base_field<T>{}}; };
    if constexpr (has_base || n == 0 || n > max_fields) {
      return false;
    } else {
      return no_array_member<T, n>(std::make_index_sequence<n>{});
    }
  }
}

/// References to T's members, in declaration order (T must be reflectable).
template <class T>
constexpr auto members(T& value) noexcept {
  constexpr std::size_t n = field_count<std::remove_const_t<T>>();
  if constexpr (n == 1) {
    auto& [m0] = value;
    return std::tie(m0);
  } else if constexpr (n == 2) {
    auto& [m0, m1] = value;
    return std::tie(m0, m1);
  } else if constexpr (n == 3) {
    auto& [m0, m1, m2] = value;
    return std::tie(m0, m1, m2);
  } else if constexpr (n == 4) {
    auto& [m0, m1, m2, m3] = value;
    return std::tie(m0, m1, m2, m3);
  } else if constexpr (n == 5) {
    auto& [m0, m1, m2, m3, m4] = value;
    return std::tie(m0, m1, m2, m3, m4);
  } else if constexpr (n == 6) {
    auto& [m0, m1, m2, m3, m4, m5] = value;
    return std::tie(m0, m1, m2, m3, m4, m5);
  } else if constexpr (n == 7) {
    auto& [m0, m1, m2, m3, m4, m5, m6] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6);
  } else if constexpr (n == 8) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7);
  } else if constexpr (n == 9) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8);
  } else if constexpr (n == 10) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9);
  } else if constexpr (n == 11) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10);
  } else if constexpr (n == 12) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11);
  } else if constexpr (n == 13) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12);
  } else if constexpr (n == 14) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13);
  } else if constexpr (n == 15) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14);
  } else if constexpr (n == 16) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15);
  } else if constexpr (n == 17) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16);
  } else if constexpr (n == 18) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17);
  } else if constexpr (n == 19) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18] =
        value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17,
                    m18);
  } else if constexpr (n == 20) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18,
           m19] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17,
                    m18, m19);
  } else if constexpr (n == 21) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19,
           m20] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17,
                    m18, m19, m20);
  } else if constexpr (n == 22) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19,
           m20, m21] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17,
                    m18, m19, m20, m21);
  } else if constexpr (n == 23) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19,
           m20, m21, m22] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17,
                    m18, m19, m20, m21, m22);
  } else if constexpr (n == 24) {
    auto& [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17, m18, m19,
           m20, m21, m22, m23] = value;
    return std::tie(m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16, m17,
                    m18, m19, m20, m21, m22, m23);
  }
}

/// The type of T's member I, without reference or const.
template <class T, std::size_t I>
using member_type =
    std::remove_cvref_t<std::tuple_element_t<I, decltype(members(std::declval<T&>()))>>;

}  // namespace parallel::detail::reflect

namespace parallel {
namespace detail {

/// True when M is T or a template of types that mentions T (std::vector<T>, std::map<K, T>...).
template <class M, class T>
struct mentions : std::is_same<M, T> {};
template <template <class...> class Template, class... Args, class T>
struct mentions<Template<Args...>, T> : std::bool_constant<(mentions<Args, T>::value || ...)> {};

/// A member that holds T again (a tree's children) is not followed: asking whether it crosses
/// would ask whether T crosses, which is being decided. Such a type needs a codec of its own.
template <class T, class M>
constexpr bool member_crosses() noexcept {
  if constexpr (mentions<M, T>::value) {
    return false;
  } else {
    return transferable<M>;
  }
}

template <class T, std::size_t... Is>
constexpr bool members_transferable(std::index_sequence<Is...>) noexcept {
  return (member_crosses<T, reflect::member_type<T, Is>>() && ...);
}

/// True when T crosses member by member: a reflectable aggregate (above) that does not cross as
/// bytes, whose every member crosses.
template <class T>
constexpr bool crosses_by_members() noexcept {
  if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T> || cereal_type<T> ||
                is_plain_bitwise<T>() || !reflect::reflectable<T>()) {
    return false;
  } else {
    return members_transferable<T>(std::make_index_sequence<reflect::field_count<T>()>{});
  }
}

/// An aggregate's members in declaration order, each by its own codec; decoded by aggregate
/// initialisation from them (braced, so read left to right).
template <class T>
struct aggregate_codec {
  static constexpr std::size_t fields = reflect::field_count<T>();

  template <std::size_t... Is>
  static constexpr std::size_t members_min_size(std::index_sequence<Is...>) noexcept {
    return (detail::min_size<reflect::member_type<T, Is>>() + ...);
  }
  static constexpr std::size_t min_size = members_min_size(std::make_index_sequence<fields>{});

  static void encode(encoder& out, const T& value) {
    std::apply([&out](const auto&... member) { (out.write(member), ...); },
               reflect::members(value));
  }
  static T decode(decoder& in) { return decode_members(in, std::make_index_sequence<fields>{}); }

 private:
  template <std::size_t... Is>
  static T decode_members(decoder& in, std::index_sequence<Is...>) {
    return T{in.read<reflect::member_type<T, Is>>()...};
  }
};

template <class T>
requires(crosses_by_members<T>()) struct fallback_codec<T> : aggregate_codec<T> {
};

}  // namespace detail
}  // namespace parallel
