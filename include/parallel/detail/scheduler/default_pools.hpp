// The pools behind parallel::threads{.workers = n}. The default pool (all cores) is created on
// first use and never destroyed, so a verb called from a static destructor still works and a call
// on it counts nothing. Other sizes live in a small cache with a thread budget: a size not cached
// retires idle pools (oldest first) until it fits, and a call that finds no room (every cached
// pool busy) gets a pool of its own for the call. So the threads alive stay bounded by the
// budget plus the calls running at that moment, whatever sequence of sizes a program uses.
// Design notes: README.md ("Pools by size").
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "../platform.hpp"
#include "../workers.hpp"
#include "fork_guard.hpp"
#include "pool_lease.hpp"
#include "scheduler.hpp"

namespace parallel::detail {

class default_pools {
 public:
  /// At most this many pools of other sizes are kept between calls.
  static constexpr std::size_t max_cached_pools = 8;

  /// Threads the cached pools may hold together (one pool larger than this is kept alone).
  static std::size_t thread_budget() noexcept {
    return std::max<std::size_t>(64, 4 * resolve_workers(0));
  }

  /// The pool for one call on parallel::threads{.workers = requested}, held until the lease ends.
  /// Throws std::system_error when the threads of a pool of an explicit size cannot be started;
  /// the default pool instead keeps the threads it got (none: the caller runs the whole call).
  static pool_lease lease(int requested) {
    auto& self = instance();
    // Fast path, no lock and no count for the default pool: once set it changes only in a
    // forked child.
    scheduler* main = self.default_.load(std::memory_order_acquire);
    if (main != nullptr && requested == 0) return pool_lease::borrow(*main);
    const std::size_t n = resolve_workers(requested);
    if (main != nullptr && main->size() == n) return pool_lease::borrow(*main);
    for (auto& s : self.slots_)
      if (s.workers.load(std::memory_order_relaxed) == n && s.enter(n))
        return pool_lease::counted(*s.pool.load(std::memory_order_relaxed), s.users);
    return self.lease_slow(requested, n);
  }

  /// True when every thread of the default pool and of the cached pools has started and sleeps.
  /// A program (or a test) that forks while a pool it just used is still starting threads or
  /// finishing a call gives its child whatever locks those threads held at that instant (a
  /// sanitizer's allocator lock, for one); waiting for this first makes such a fork clean.
  static bool asleep() {
    auto& self = instance();
    std::lock_guard lock(fork_guard::registry_mutex());
    const scheduler* main = self.default_.load(std::memory_order_relaxed);
    if (main != nullptr && !main->asleep()) return false;
    for (auto& s : self.slots_) {
      const scheduler* pool = s.pool.load(std::memory_order_relaxed);
      if (pool != nullptr && s.workers.load(std::memory_order_relaxed) != 0 && !pool->asleep())
        return false;
    }
    return true;
  }

 private:
  // A cached pool. `users` counts the calls running on it, or is `closed` while the slot is
  // empty or being refilled; a pool is retired only by closing it at 0 users, so a call that
  // entered keeps its pool. Slots are never freed: a racing reader never touches freed memory.
  struct alignas(64) slot {
    static constexpr std::uint32_t closed = std::uint32_t{1} << 31;
    std::atomic<std::size_t> workers{0};  // the pool's size; 0 when empty
    std::atomic<std::uint32_t> users{closed};
    std::atomic<scheduler*> pool{nullptr};
    std::uint64_t filled_at = 0;  // under the registry lock: retirement order

    // Enters the slot when it holds a pool of n. The acquire pairs with the release that opened
    // the slot, so `pool` and `workers` read after it are the ones installed; they cannot change
    // while we are in.
    bool enter(std::size_t n) noexcept {
      std::uint32_t seen = users.load(std::memory_order_relaxed);
      do {
        if ((seen & closed) != 0) return false;
      } while (!users.compare_exchange_weak(seen, seen + 1, std::memory_order_acquire,
                                            std::memory_order_relaxed));
      if (workers.load(std::memory_order_relaxed) == n) return true;
      users.fetch_sub(1, std::memory_order_release);  // refilled with another size meanwhile
      return false;
    }
  };

  pool_lease lease_slow(int requested, std::size_t n) {
    const std::size_t cores = resolve_workers(0);
    const std::string who = requested == 0
                                ? std::string("parallel::threads{}")
                                : "parallel::threads{.workers = " + std::to_string(requested) + "}";
    std::unique_lock lock(fork_guard::registry_mutex());
    if (n == cores) {
      scheduler* main = default_.load(std::memory_order_relaxed);
      if (main == nullptr) {
        // Only the default call degrades: an explicit size is a request the caller made.
        const auto refused = requested == 0 ? on_thread_refused::degrade : on_thread_refused::fail;
        auto pool = std::make_unique<scheduler>(n, refused, who);
        // No thread at all: this call runs in the caller, and the next one tries again.
        if (pool->size() == 0) return pool_lease::owned(std::move(pool));
        main = pool.release();  // NOLINT: intentionally immortal
        default_.store(main, std::memory_order_release);
      }
      if (requested == 0 || main->size() == n) return pool_lease::borrow(*main);
      // The default pool was degraded: an explicit request for all cores gets a pool of its own.
    }
    for (auto& s : slots_)
      if (s.workers.load(std::memory_order_relaxed) == n && s.enter(n))
        return pool_lease::counted(*s.pool.load(std::memory_order_relaxed), s.users);

    slot* free = make_room(n);
    if (free == nullptr) {
      lock.unlock();  // the threads of a pool for one call are started without the lock
      return pool_lease::owned(std::make_unique<scheduler>(n, on_thread_refused::fail, who));
    }
    // The slot stays closed if this throws.
    auto* pool = new scheduler(n, on_thread_refused::fail, who);  // NOLINT: owned by the slot
    free->pool.store(pool, std::memory_order_relaxed);
    free->workers.store(n, std::memory_order_relaxed);
    free->filled_at = ++fills_;
    free->users.store(1, std::memory_order_release);  // opened, with this call in it
    return pool_lease::counted(*pool, free->users);
  }

  // Under the registry lock. Retires idle pools, oldest first, until a pool of n fits in a free
  // slot and the budget (or alone); returns that slot, or nullptr when busy pools leave no room.
  slot* make_room(std::size_t n) {
    std::size_t cached = 0;
    for (auto& s : slots_) cached += s.workers.load(std::memory_order_relaxed);
    for (std::size_t attempt = 0; attempt <= max_cached_pools; ++attempt) {
      slot* free = nullptr;
      for (auto& s : slots_)
        if (s.workers.load(std::memory_order_relaxed) == 0) free = &s;
      if (free != nullptr && (cached == 0 || cached + n <= thread_budget())) return free;
      slot* oldest = nullptr;
      for (auto& s : slots_)
        if (s.workers.load(std::memory_order_relaxed) != 0 &&
            s.users.load(std::memory_order_relaxed) == 0 &&
            (oldest == nullptr || s.filled_at < oldest->filled_at))
          oldest = &s;
      if (oldest == nullptr) return nullptr;
      std::uint32_t idle = 0;
      // Acquire: every call that used the pool (each lowered `users` with release) is over.
      if (!oldest->users.compare_exchange_strong(idle, slot::closed, std::memory_order_acquire,
                                                 std::memory_order_relaxed))
        continue;  // a call entered meanwhile
      cached -= oldest->workers.load(std::memory_order_relaxed);
      // Joins its threads. None of them can be us: a worker runs only tasks of calls on its own
      // pool, and such a call would hold it (users > 0).
      delete oldest->pool.load(std::memory_order_relaxed);  // NOLINT: owned by the slot
      oldest->pool.store(nullptr, std::memory_order_relaxed);
      oldest->workers.store(0, std::memory_order_relaxed);
    }
    return nullptr;
  }

  static default_pools& instance() {
    static default_pools* self = [] {
      auto* p = new default_pools;  // NOLINT: immortal, see above
      fork_guard::install();
      fork_guard::forget_pools_in_child() = [] {
        // The inherited pools have no threads in the child: drop them without destroying them
        // (their destructors would join threads that do not exist).
        auto& pools = instance();
        pools.default_.store(nullptr, std::memory_order_relaxed);
        for (auto& s : pools.slots_) {
          s.pool.store(nullptr, std::memory_order_relaxed);
          s.workers.store(0, std::memory_order_relaxed);
          s.users.store(slot::closed, std::memory_order_relaxed);
        }
      };
      return p;
    }();
    return *self;
  }

  std::atomic<scheduler*> default_{nullptr};
  std::array<slot, max_cached_pools> slots_{};
  std::uint64_t fills_ = 0;  // under the registry lock
};

}  // namespace parallel::detail
