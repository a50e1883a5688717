// A call's hold on the pool it runs on. A map or an imap on parallel::threads{.workers = n} keeps
// its pool from being retired (default_pools.hpp) until it ends; a pool object's calls, and calls
// on the immortal default pool, hold nothing. The lease is moved into an imap's state, so it
// lasts as long as the lazy range.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

#include "scheduler.hpp"

namespace parallel::detail {

class pool_lease {
 public:
  /// A pool that outlives the call by itself (a thread_pool, the default pool): nothing to hold.
  static pool_lease borrow(scheduler& pool) noexcept { return pool_lease(&pool, nullptr, {}); }

  /// A cached pool whose `users` count the caller already raised; lowered when the call ends.
  static pool_lease counted(scheduler& pool, std::atomic<std::uint32_t>& users) noexcept {
    return pool_lease(&pool, &users, {});
  }

  /// A pool made for this call alone: its threads end with the call.
  static pool_lease owned(std::unique_ptr<scheduler> pool) noexcept {
    scheduler* raw = pool.get();
    return pool_lease(raw, nullptr, std::move(pool));
  }

  pool_lease(pool_lease&& other) noexcept
      : pool_(std::exchange(other.pool_, nullptr)),
        users_(std::exchange(other.users_, nullptr)),
        owned_(std::move(other.owned_)) {}
  pool_lease& operator=(pool_lease&& other) noexcept {
    if (this != &other) {
      release();
      pool_ = std::exchange(other.pool_, nullptr);
      users_ = std::exchange(other.users_, nullptr);
      owned_ = std::move(other.owned_);
    }
    return *this;
  }
  pool_lease(const pool_lease&) = delete;
  pool_lease& operator=(const pool_lease&) = delete;
  ~pool_lease() { release(); }

  scheduler& pool() const noexcept { return *pool_; }

 private:
  pool_lease(scheduler* pool, std::atomic<std::uint32_t>* users,
             std::unique_ptr<scheduler> owned) noexcept
      : pool_(pool), users_(users), owned_(std::move(owned)) {}

  void release() noexcept {
    if (users_ == nullptr && owned_ == nullptr) return;  // borrowed: the default pool's calls
    // In a child forked during the call the pool has no threads and its slot was reset: the
    // count is not ours to lower, and the threads are not there to join.
    const bool inherited = !pool_->usable();
    // Release: what the call did with the pool happens before its retirement (an acquire CAS).
    if (users_ != nullptr && !inherited) users_->fetch_sub(1, std::memory_order_release);
    if (owned_ != nullptr && inherited) (void)owned_.release();
    owned_.reset();
    users_ = nullptr;
    pool_ = nullptr;
  }

  scheduler* pool_;
  std::atomic<std::uint32_t>* users_;
  std::unique_ptr<scheduler> owned_;
};

}  // namespace parallel::detail
