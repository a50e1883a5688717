// <windows.h> as the library includes it: without its min / max macros and its rarely used parts.
#pragma once

#ifndef NOMINMAX
#define NOMINMAX  // std::min / std::max, not <windows.h>'s macros
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
