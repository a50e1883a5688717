// Every public header includes this first: a compiler in an older language mode stops here with
// one message that says what to do, instead of pages of errors from the first concept. (In
// CMake, linking parallel::parallel asks for C++20 already.)
#pragma once

#if (defined(_MSVC_LANG) && _MSVC_LANG < 202002L) || (!defined(_MSVC_LANG) && __cplusplus < 202002L)
#error "parallel needs C++20: compile with -std=c++20 (MSVC: /std:c++20)"
// GCC and Clang go on after #error, and every line of the library would add errors of its own;
// a header that does not exist is fatal to them, so they stop here.
#include <parallel_needs_cpp20>
#endif
