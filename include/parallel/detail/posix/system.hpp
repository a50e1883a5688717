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

/// The size of a huge page (x86-64, arm64 with 4 KiB pages: 2 MiB).
inline constexpr std::size_t huge_page = std::size_t{2} << 20;

/// glibc's malloc gives a block past its mmap threshold a mapping of its own: a header of two
/// words, then the block, the mapping 8 bytes longer than the block (rounded up to pages).
inline constexpr std::size_t malloc_header = 2 * sizeof(std::size_t);

/// The bytes to allocate, at least `bytes`, so that under glibc the block's mapping is a whole
/// number of huge pages. Linux (6.7 on) places such a mapping on a huge-page boundary, so that
/// all of it can be huge pages (prepare_large_write); elsewhere it is only a larger block.
inline std::size_t whole_huge_pages_request(std::size_t bytes) noexcept {
  constexpr std::size_t overhead = malloc_header + sizeof(std::size_t);
  return (bytes + overhead + huge_page - 1) / huge_page * huge_page - overhead;
}

/// Readies a large block about to be written for the first time, [data, data + bytes) from
/// operator new: transparent huge pages, so that its first touch faults in 2 MiB at a time
/// instead of 4 KiB (here, 40 MB of ints: ~24 ms -> ~6 ms). Hints only; ignored where THP is off.
///
/// - A block whose mapping starts on a huge-page boundary (whole_huge_pages_request): the
///   advice covers the mapping from its start, malloc's header included (a range begun past it
///   would split the mapping, and its first 2 MiB could not be huge), and that first huge page
///   is made at once (MADV_COLLAPSE, Linux 6.1): malloc wrote the header before the advice, so
///   it would fault in 4 KiB at a time. Only while the rest of it is untouched (mincore): a
///   block reused from the heap keeps its pages. A fresh result vector on this project's VM,
///   reserved, zero-filled and written: 2 MB ~2.4-3.1 ms -> ~0.22 ms, 4 MB ~5.6-7.0 -> ~0.4 ms,
///   16 MB ~3.1-4.2 -> ~1.3-1.7 ms. The price: the memory of the huge pages it touches, up to
///   2 MiB more than the block's (a vector of just over 1 MiB holds 2). Where no huge page can
///   be made, the block is mapped in at once.
/// - Any other block: the whole pages inside it are advised, and the stretches before its first
///   2 MiB boundary and after its last, which cannot be huge, mapped in at once
///   (populate_for_write) instead of a fault per 4 KiB.
inline void prepare_large_write(void* data, std::size_t bytes) noexcept {
#if defined(MADV_HUGEPAGE)
  const auto first = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t end = first + bytes;
#if defined(__linux__)
  if (first % huge_page == malloc_header) {
    auto* const mapping = reinterpret_cast<unsigned char*>(first - malloc_header);
    const std::size_t length = (bytes + malloc_header + huge_page - 1) / huge_page * huge_page;
    if (::madvise(mapping, length, MADV_HUGEPAGE) == 0) {
      constexpr int collapse = 25;  // MADV_COLLAPSE: glibc 2.36's <sys/mman.h> lacks the name
      const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
      unsigned char resident = 1;
      if (::mincore(mapping + page, page, &resident) != 0 || (resident & 1) != 0 ||
          ::madvise(mapping, huge_page, collapse) == 0)
        return;
    }
    // No huge pages after all (THP off, or none free): mapped in at once, as a smaller block.
    populate_for_write(data, bytes);
    return;
  }
#endif
  advise_whole_pages(data, bytes, MADV_HUGEPAGE);
  const std::uintptr_t huge_begin = (first + huge_page - 1) / huge_page * huge_page;
  const std::uintptr_t huge_end = end / huge_page * huge_page;
  if (huge_end <= huge_begin) {
    populate_for_write(data, bytes);
    return;
  }
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
