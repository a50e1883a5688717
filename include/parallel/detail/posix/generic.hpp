// The operating-system layer of the thread backend on a POSIX system other than Linux (the BSDs,
// macOS): posix/system.hpp, and the portable forms of what Linux does its own way
// (linux/system.hpp): every core the system reports, and no huge-page layout for result vectors.
#pragma once

#include <cstddef>
#include <thread>

#include "system.hpp"

namespace parallel::detail::os {

/// The cores the system reports, at least 1.
inline std::size_t available_cores() noexcept {
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

/// No placement of large blocks to ask for: the block as asked.
inline std::size_t whole_huge_pages_request(std::size_t bytes) noexcept { return bytes; }

/// Maps in the block about to be written at once where the system can (populate_for_write).
inline void prepare_large_write(void* data, std::size_t bytes) noexcept {
  populate_for_write(data, bytes);
}

}  // namespace parallel::detail::os
