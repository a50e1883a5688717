// The one place that picks the operating-system layer. Logic files include this header and call
// the functions of parallel::detail::os, never <unistd.h> or <windows.h> themselves.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#if defined(_WIN32)
#include "win32/system.hpp"
#elif defined(__linux__)
#include "linux/system.hpp"
#else
#include "posix/generic.hpp"
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

/// Until when (steady_clock nanoseconds) a spin_until() of this process does not spin: a yield
/// found the core taken by another program (see spin_until).
inline std::atomic<std::int64_t>& spin_contended_until() noexcept {
  static std::atomic<std::int64_t> until{0};
  return until;
}

/// Waits up to `ns` nanoseconds for `ready()` to hold without sleeping; true when it held. A
/// core that waits here is a core the work cannot use, so keep `ns` short. Every few hundred
/// nanoseconds the core is yielded: the thread that would make ready() true may be waiting for
/// it (a worker process, the caller and a pool's loop can be more threads than cores). A yield
/// that takes long means another program took the core: spinning then costs a time slice per
/// yield, so spin_until() returns at once, and does not spin at all in this process for the
/// next 20 ms (it sleeps the way it would without spinning, where a wake-up gets the core back
/// sooner than a yield does).
template <class Ready>
bool spin_until(Ready&& ready, std::uint64_t ns) {
  if (ready()) return true;
  if (ns == 0) return false;
  using clock = std::chrono::steady_clock;
  const auto ticks = [] {
    return static_cast<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch())
            .count());
  };
  std::int64_t now = ticks();
  if (now < spin_contended_until().load(std::memory_order_relaxed)) return false;
  const std::int64_t until = now + static_cast<std::int64_t>(ns);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    now = ticks();
    if (now >= until) return ready();
    std::this_thread::yield();
    const std::int64_t after = ticks();
    if (after - now > 500'000) {
      spin_contended_until().store(after + 20'000'000, std::memory_order_relaxed);
      return ready();
    }
  }
}

}  // namespace parallel::detail
