// Windows side of the operating-system layer used by the thread backend.
#pragma once

#include <io.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "windows.hpp"

/// No fork() on Windows: start::spawn alone (see posix/system.hpp).
#define PARALLEL_DETAIL_HAS_FORK 0

namespace parallel::detail::os {

inline constexpr bool has_fork = false;

inline std::size_t available_cores() noexcept {
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

/// No transparent huge pages to ask for on Windows, and no call that maps in many pages at once
/// (a copy into fresh memory faults page by page, as it does without the hint on Linux).
inline std::size_t whole_huge_pages_request(std::size_t bytes) noexcept { return bytes; }
inline void prepare_large_write(void*, std::size_t) noexcept {}
inline void populate_for_write(void*, std::size_t) noexcept {}
/// Per-call fork, which keeps arenas for reuse (and gives back their memory), is POSIX only.
inline void give_back_shared(void*, std::size_t) noexcept {}

inline bool stderr_is_terminal() noexcept { return ::_isatty(::_fileno(stderr)) != 0; }

/// Columns of the console window on stderr now; else %COLUMNS%; else 80.
inline std::size_t stderr_columns() noexcept {
  CONSOLE_SCREEN_BUFFER_INFO info{};
  if (::GetConsoleScreenBufferInfo(::GetStdHandle(STD_ERROR_HANDLE), &info) != 0) {
    const long columns = static_cast<long>(info.srWindow.Right) - info.srWindow.Left + 1;
    if (columns > 0) return static_cast<std::size_t>(columns);
  }
  if (const char* env = std::getenv("COLUMNS")) {  // NOLINT(concurrency-mt-unsafe): read only
    const long columns = std::strtol(env, nullptr, 10);
    if (columns > 0) return static_cast<std::size_t>(columns);
  }
  return 80;
}

/// Windows has no fork(): nothing to prepare.
inline void on_fork(void (*)(), void (*)(), void (*)()) noexcept {}

}  // namespace parallel::detail::os
