// What may cross a process boundary: parallel::codec<T> turns a value into bytes and back,
// parallel::transferable<T> says whether it can, and a type that cannot is a compile-time error
// naming the type and the fix.
//
// Wire format (detail/codec/README.md has the why): no header, no type tags, no framing; a value
// is its codec's bytes, in the order written. Numbers, enums and bitwise aggregates are their
// object representation in the machine's native byte order: both ends are the same executable,
// so "native" is the same order on both sides (little-endian on every platform we build for,
// but nothing here depends on it). Lengths are 64-bit. Decoding trusts nothing: every read is
// bounds-checked and every length is checked against the bytes left before anything is
// allocated; bad input throws parallel::error("parallel: protocol error: ...").
//
// The names this header gives (codec<T>, transferable<T>, encoder, decoder) and their manual
// are in detail/codec/core.hpp, which the specialisations for the standard types, aggregates and
// cereal types build on; this header brings them all.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include "detail/codec/aggregate.hpp"
#include "detail/codec/cereal.hpp"
#include "detail/codec/core.hpp"
#include "detail/codec/fallback.hpp"
#include "detail/codec/std_types.hpp"
#include "errors.hpp"
