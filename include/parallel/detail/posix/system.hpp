// POSIX side of the operating-system layer used by the thread backend.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

/// Readies a large range about to be written for the first time: transparent huge pages on the
/// whole pages inside [data, data + bytes), so that its first touch faults in 2 MiB at a time
/// instead of 4 KiB (here, 40 MB of ints: ~24 ms -> ~6 ms); and the stretches before the first
/// 2 MiB boundary and after the last, which cannot be huge (malloc's mapping is not aligned to
/// 2 MiB), mapped in at once (populate_for_write) instead of a fault per 4 KiB (16 MB of
/// results, fresh: ~4.8 ms -> ~3 ms to zero-fill). Hints only; ignored where THP is off.
inline void prepare_large_write(void* data, std::size_t bytes) noexcept {
#if defined(MADV_HUGEPAGE)
  advise_whole_pages(data, bytes, MADV_HUGEPAGE);
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  const auto first = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t end = first + bytes;
  const std::uintptr_t huge_begin = (first + huge - 1) / huge * huge;
  const std::uintptr_t huge_end = end / huge * huge;
  if (huge_end <= huge_begin) return;
  populate_for_write(data, static_cast<std::size_t>(huge_begin - first));
  populate_for_write(reinterpret_cast<void*>(huge_end), static_cast<std::size_t>(end - huge_end));
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
