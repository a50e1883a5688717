// The operating-system layer of the thread backend on any POSIX system (linux/system.hpp adds
// what Linux does its own way; generic.hpp is the rest of the systems).
#pragma once

#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

/// fork() exists here: the process backends' start::fork and start::forkserver (a macro for
/// the headers that include fork-only code: algorithms/process_backends.hpp).
#define PARALLEL_DETAIL_HAS_FORK 1

namespace parallel::detail::os {

/// fork() exists here (PARALLEL_DETAIL_HAS_FORK, for policy.hpp's checks).
inline constexpr bool has_fork = true;

/// Gives `advice` (madvise) for the whole pages inside [data, data + bytes); a hint only.
inline void advise_whole_pages(void* data, std::size_t bytes, int advice) noexcept {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + page - 1) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + bytes) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, advice);
}

/// Maps in, writable, the whole pages inside [data, data + bytes) in one call
/// (MADV_POPULATE_WRITE, Linux 5.14): a large vector about to be filled by a copy then takes
/// no page fault per 4 KiB (here, a fresh MiB: ~2.9 ms of faults -> ~1.6 ms). A hint only:
/// nothing happens where the kernel does not know it.
inline void populate_for_write(void* data, std::size_t bytes) noexcept {
#if defined(MADV_POPULATE_WRITE)
  advise_whole_pages(data, bytes, MADV_POPULATE_WRITE);
#else
  (void)data;
  (void)bytes;
#endif
}

/// Keeps the whole pages inside [data, data + bytes) out of the processes fork() makes until
/// share_with_forks (MADV_DONTFORK): memory the caller writes while its forked workers run (a
/// per-call map's results) then stays its own, where each first write to a page shared with a
/// child would be a copy-on-write fault, a page copy and a TLB shootdown (~20 us here). Nothing
/// that runs in such a child may touch it. A hint only.
inline void withhold_from_forks(void* data, std::size_t bytes) noexcept {
#if defined(MADV_DONTFORK)
  advise_whole_pages(data, bytes, MADV_DONTFORK);
#else
  (void)data;
  (void)bytes;
#endif
}

/// Undoes withhold_from_forks: later forks see the pages again.
inline void share_with_forks(void* data, std::size_t bytes) noexcept {
#if defined(MADV_DOFORK)
  advise_whole_pages(data, bytes, MADV_DOFORK);
#else
  (void)data;
  (void)bytes;
#endif
}

/// Gives the pages of shared memory inside [data, data + bytes) back to the system
/// (MADV_REMOVE: they read as zeros again, in every process that maps them). A hint only.
inline void give_back_shared(void* data, std::size_t bytes) noexcept {
#if defined(MADV_REMOVE)
  advise_whole_pages(data, bytes, MADV_REMOVE);
#else
  (void)data;
  (void)bytes;
#endif
}

inline bool stderr_is_terminal() noexcept { return ::isatty(STDERR_FILENO) == 1; }

/// Columns of the terminal on stderr now (it may be resized between two calls); else $COLUMNS;
/// else 80.
inline std::size_t stderr_columns() noexcept {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  if (const char* env = std::getenv("COLUMNS")) {  // NOLINT(concurrency-mt-unsafe): read only
    const long columns = std::strtol(env, nullptr, 10);
    if (columns > 0) return static_cast<std::size_t>(columns);
  }
  return 80;
}

/// Runs prepare before fork() in the forking thread, parent after it in the parent and child
/// after it in the child (pthread_atfork).
inline void on_fork(void (*prepare)(), void (*parent)(), void (*child)()) noexcept {
  ::pthread_atfork(prepare, parent, child);
}

}  // namespace parallel::detail::os
