// The version of parallel these headers are, as numbers for the preprocessor and as text.
//
//     #if PARALLEL_VERSION >= 100  // 0.1.0 or later: major * 10000 + minor * 100 + patch
//     std::puts(parallel::version);  // "0.1.0"
//
// The project's CMakeLists.txt refuses to configure when its VERSION says otherwise.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#define PARALLEL_VERSION_MAJOR 0
#define PARALLEL_VERSION_MINOR 1
#define PARALLEL_VERSION_PATCH 0
#define PARALLEL_VERSION \
  (PARALLEL_VERSION_MAJOR * 10000 + PARALLEL_VERSION_MINOR * 100 + PARALLEL_VERSION_PATCH)

namespace parallel {

/// "major.minor.patch", as in CMake's find_package(parallel <version>).
inline constexpr const char* version = "0.1.0";

}  // namespace parallel
