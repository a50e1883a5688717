// The pools behind parallel::threads{.workers = n}: created on first use, one per worker count,
// kept for the life of the process (never destroyed, so a verb called from a static destructor
// still works; idle workers sleep and cost nothing).
#pragma once

#include <array>
#include <cstddef>
#include <mutex>

#include "../platform.hpp"
#include "fork_guard.hpp"
#include "scheduler.hpp"

namespace parallel::detail {

/// 0 = all cores, n > 0 = n, n < 0 = all cores but |n|; at least 1.
inline std::size_t resolve_workers(int requested) noexcept {
  const auto cores = static_cast<long long>(os::available_cores());
  long long n = requested == 0 ? cores : requested > 0 ? requested : cores + requested;
  return static_cast<std::size_t>(n < 1 ? 1 : n);
}

class default_pools {
 public:
  static scheduler& get(int requested_workers) {
    const std::size_t n = resolve_workers(requested_workers);
    auto& self = instance();
    std::lock_guard lock(fork_guard::registry_mutex());
    for (auto& entry : self.pools_)
      if (entry.pool != nullptr && entry.workers == n) return *entry.pool;
    for (auto& entry : self.pools_)
      if (entry.pool == nullptr) {
        entry.workers = n;
        entry.pool = new scheduler(n);  // NOLINT: intentionally immortal
        return *entry.pool;
      }
    // More distinct sizes than slots: reuse the last slot's table row but keep the old pool alive.
    static_assert(max_pools > 0);
    self.pools_.back().workers = n;
    self.pools_.back().pool = new scheduler(n);  // NOLINT: intentionally immortal
    return *self.pools_.back().pool;
  }

 private:
  static constexpr std::size_t max_pools = 16;
  struct entry {
    std::size_t workers = 0;
    scheduler* pool = nullptr;
  };

  static default_pools& instance() {
    static default_pools* self = [] {
      auto* p = new default_pools;  // NOLINT: immortal, see above
      fork_guard::install();
      fork_guard::forget_pools_in_child() = [] {
        // The inherited pools have no threads in the child: drop them without destroying them
        // (their destructor would join threads that do not exist).
        for (auto& e : instance().pools_) e = entry{};
      };
      return p;
    }();
    return *self;
  }

  std::array<entry, max_pools> pools_{};
};

}  // namespace parallel::detail
