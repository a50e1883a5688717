// The operating-system layer of the thread backend on Linux: the POSIX one (posix/system.hpp),
// and what Linux does its own way: the cores of this process's affinity mask, and result
// vectors of transparent huge pages from their first byte.
#pragma once

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <thread>

#include "../posix/system.hpp"

namespace parallel::detail::os {

/// Cores this process may run on (its affinity mask), at least 1.
inline std::size_t available_cores() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<std::size_t>(n);
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
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
  const auto first = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t end = first + bytes;
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
  advise_whole_pages(data, bytes, MADV_HUGEPAGE);
  const std::uintptr_t huge_begin = (first + huge_page - 1) / huge_page * huge_page;
  const std::uintptr_t huge_end = end / huge_page * huge_page;
  if (huge_end <= huge_begin) {
    populate_for_write(data, bytes);
    return;
  }
  populate_for_write(data, static_cast<std::size_t>(huge_begin - first));
  populate_for_write(reinterpret_cast<void*>(huge_end), static_cast<std::size_t>(end - huge_end));
}

}  // namespace parallel::detail::os
