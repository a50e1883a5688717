// The payload buffers of finished jobs, kept for the next jobs a caller writes (engine.hpp's
// config::spares; a process pool owns one).
#pragma once

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

namespace parallel::detail::ipc {

/// A job's payload is written once by its caller and read until the job ends (a dead worker's
/// jobs are sent again). A fresh buffer of a few hundred KiB is fresh memory, whose first touch
/// costs a page fault per 4 KiB (~10 us each on a small VM: ~40 ms over the 16 MB of items of a
/// 2e6-item map). A pool hands its finished jobs' buffers to its next ones instead: at most
/// `max_buffers`, none smaller than `min_buffer_bytes` or larger than `max_buffer_bytes`, at most
/// `max_total_bytes` in all (what an idle pool keeps). Any thread may give or take.
class payload_cache {
 public:
  static constexpr std::size_t max_buffers = 32;
  static constexpr std::size_t min_buffer_bytes = std::size_t{4} << 10;
  static constexpr std::size_t max_buffer_bytes = std::size_t{8} << 20;
  static constexpr std::size_t max_total_bytes = std::size_t{32} << 20;

  /// An empty buffer: the largest of those given back, if any (a job that outgrows its buffer
  /// moves to fresh memory, and the chunks of a call shrink towards its end).
  std::vector<std::byte> take() {
    std::vector<std::byte> buffer;
    std::lock_guard lock(mutex_);
    if (spare_.empty()) return buffer;
    const auto largest =
        std::max_element(spare_.begin(), spare_.end(),
                         [](const auto& a, const auto& b) { return a.capacity() < b.capacity(); });
    std::iter_swap(largest, spare_.end() - 1);
    buffer = std::move(spare_.back());
    spare_.pop_back();
    total_ -= buffer.capacity();
    return buffer;
  }

  /// Keeps `buffer`'s memory for a later take(), or frees it (too small to matter, too large to
  /// hold, or the cache is full).
  void give(std::vector<std::byte>&& buffer) {
    const std::size_t bytes = buffer.capacity();
    if (bytes < min_buffer_bytes || bytes > max_buffer_bytes) return;
    buffer.clear();
    std::lock_guard lock(mutex_);
    if (spare_.size() >= max_buffers || total_ + bytes > max_total_bytes) return;
    total_ += bytes;
    spare_.push_back(std::move(buffer));
  }

  /// Bytes of memory held for later jobs.
  std::size_t held_bytes() const {
    std::lock_guard lock(mutex_);
    return total_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::vector<std::byte>> spare_;
  std::size_t total_ = 0;  // capacity held in spare_
};

}  // namespace parallel::detail::ipc
