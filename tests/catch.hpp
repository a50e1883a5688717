// The one include for Catch2 in test files: `#include "catch.hpp"`.
//
// Debian 12 ships Catch2 v2 (<catch2/catch.hpp>); newer systems ship v3 (<catch2/catch_all.hpp>).
// Test files use what both have: TEST_CASE, SECTION, REQUIRE/CHECK(_THROWS_AS/_NOTHROW),
// GENERATE, Approx, INFO/CAPTURE. tests/CMakeLists.txt defines PARALLEL_CATCH2_VERSION_MAJOR
// from the Catch2 that find_package found, so a stray header of the other version on the
// include path cannot win.
#pragma once

#if defined(PARALLEL_CATCH2_VERSION_MAJOR)
#define PARALLEL_CATCH2_V3 (PARALLEL_CATCH2_VERSION_MAJOR >= 3)
#else
#define PARALLEL_CATCH2_V3 __has_include(<catch2/catch_all.hpp>)
#endif

#if PARALLEL_CATCH2_V3
#include <catch2/catch_all.hpp>
using Catch::Approx;  // global in v2, namespaced in v3
#else
#include <catch2/catch.hpp>
#endif
