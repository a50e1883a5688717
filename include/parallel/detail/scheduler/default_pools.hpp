// The pools behind parallel::threads{.workers = n}: created on first use, one per worker count,
// kept for the life of the process (never destroyed, so a verb called from a static destructor
// still works; idle workers sleep and cost nothing).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <mutex>

#include "../platform.hpp"
#include "fork_guard.hpp"
#include "scheduler.hpp"

namespace parallel::detail {

/// 0 = all cores, n > 0 = n, n < 0 = all cores but |n|; at least 1. The core count is read once
/// (as oneTBB and OpenMP do): asking the kernel on every call would cost more than a small map.
inline std::size_t resolve_workers(int requested) noexcept {
  static const auto cores = static_cast<long long>(os::available_cores());
  const long long n = requested == 0 ? cores : requested > 0 ? requested : cores + requested;
  return static_cast<std::size_t>(n < 1 ? 1 : n);
}

class default_pools {
 public:
  static scheduler& get(int requested_workers) {
    const std::size_t n = resolve_workers(requested_workers);
    auto& self = instance();
    // Fast path without the lock: a slot, once filled, changes only in a forked child.
    for (auto& entry : self.pools_) {
      scheduler* pool = entry.pool.load(std::memory_order_acquire);
      if (pool == nullptr) break;
      if (entry.workers.load(std::memory_order_relaxed) == n) return *pool;
    }
    std::lock_guard lock(fork_guard::registry_mutex());
    for (auto& entry : self.pools_) {
      scheduler* pool = entry.pool.load(std::memory_order_relaxed);
      if (pool != nullptr && entry.workers.load(std::memory_order_relaxed) == n) return *pool;
      if (pool == nullptr) {
        pool = new scheduler(n);  // NOLINT: intentionally immortal
        entry.workers.store(n, std::memory_order_relaxed);
        entry.pool.store(pool, std::memory_order_release);
        return *pool;
      }
    }
    // More distinct sizes than slots: such a pool is still immortal, just not shared.
    static thread_local scheduler* overflow = nullptr;
    if (overflow == nullptr || overflow->size() != n) overflow = new scheduler(n);  // NOLINT
    return *overflow;
  }

 private:
  static constexpr std::size_t max_pools = 16;
  struct entry {
    std::atomic<std::size_t> workers{0};
    std::atomic<scheduler*> pool{nullptr};
  };

  static default_pools& instance() {
    static default_pools* self = [] {
      auto* p = new default_pools;  // NOLINT: immortal, see above
      fork_guard::install();
      fork_guard::forget_pools_in_child() = [] {
        // The inherited pools have no threads in the child: drop them without destroying them
        // (their destructor would join threads that do not exist).
        for (auto& e : instance().pools_) e.pool.store(nullptr, std::memory_order_relaxed);
      };
      return p;
    }();
    return *self;
  }

  std::array<entry, max_pools> pools_{};
};

}  // namespace parallel::detail
