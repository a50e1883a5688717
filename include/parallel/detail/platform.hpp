// The one place that picks the operating-system layer. Logic files include this header and call
// the functions of parallel::detail::os, never <unistd.h> or <windows.h> themselves.
#pragma once

#if defined(_WIN32)
#include "win32/system.hpp"
#else
#include "posix/system.hpp"
#endif

namespace parallel::detail {

/// Tells the CPU we are in a spin loop (frees the sibling hyper-thread, saves power).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace parallel::detail
