// POSIX side of the operating-system layer used by the thread backend.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <thread>

namespace parallel::detail::os {

/// Cores this process may run on (its affinity mask), at least 1.
inline std::size_t available_cores() noexcept {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<std::size_t>(n);
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

inline bool stderr_is_terminal() noexcept { return ::isatty(STDERR_FILENO) == 1; }

/// Runs prepare before fork() in the forking thread, parent after it in the parent and child
/// after it in the child (pthread_atfork).
inline void on_fork(void (*prepare)(), void (*parent)(), void (*child)()) noexcept {
  ::pthread_atfork(prepare, parent, child);
}

}  // namespace parallel::detail::os
