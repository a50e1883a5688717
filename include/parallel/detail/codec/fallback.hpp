// What parallel::codec<T> is when nobody specialised it (its definition): cereal's serialize,
// the bytes of a plain type, or a mark that says the type cannot cross.
#pragma once

#include <type_traits>

#include "cereal.hpp"
#include "core.hpp"

namespace parallel {
namespace detail {

/// What codec<T> is when nobody specialised it: a cereal type goes through cereal (its author
/// asked for that), a number, enum or aggregate of numbers goes as bytes, anything else is
/// marked so that transferable<T> is false and require_transferable<T> says why.
template <class T>
struct fallback_codec {
  using parallel_cannot_cross = void;
};

template <class T>
requires(!std::is_arithmetic_v<T> && !std::is_enum_v<T> && cereal_type<T>) struct fallback_codec<T>
    : cereal_codec<T> {
};

template <class T>
requires((std::is_arithmetic_v<T> || std::is_enum_v<T> ||
          !cereal_type<T>)&&is_plain_bitwise<T>()) struct fallback_codec<T> : bitwise_codec<T> {
};

}  // namespace detail

template <class T>
struct codec : detail::fallback_codec<T> {};

}  // namespace parallel
