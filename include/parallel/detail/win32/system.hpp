// Windows side of the operating-system layer used by the thread backend.
#pragma once

#include <io.h>

#include <cstddef>
#include <cstdio>
#include <thread>

namespace parallel::detail::os {

inline std::size_t available_cores() noexcept {
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

/// No transparent huge pages to ask for on Windows.
inline void prefer_huge_pages(void*, std::size_t) noexcept {}

inline bool stderr_is_terminal() noexcept { return ::_isatty(::_fileno(stderr)) != 0; }

/// Windows has no fork(): nothing to prepare.
inline void on_fork(void (*)(), void (*)(), void (*)()) noexcept {}

}  // namespace parallel::detail::os
