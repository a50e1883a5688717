// The unit the scheduler runs: a function pointer plus the isolation tag of its parallel call.
#pragma once

#include <atomic>
#include <cstdint>

namespace parallel::detail {

/// Tasks of one parallel call share a tag. A thread that waits for a call runs only tasks with
/// that call's tag (oneTBB's isolation): a caller that holds a lock while it waits can never be
/// made to run an unrelated task that takes the same lock.
using isolation_tag = std::uint64_t;
inline constexpr isolation_tag any_tag = 0;

/// Derived types put their data after the base and set execute_. The scheduler never touches a
/// task after execute_ returns: execute_ may free it or signal a waiter that frees it.
struct task {
  using execute_fn = void (*)(task*) noexcept;

  explicit task(execute_fn execute, isolation_tag tag = any_tag) noexcept
      : execute_(execute), tag_(tag) {}

  execute_fn execute_;
  isolation_tag tag_;
  std::atomic<task*> next_{nullptr};  // link in an injection_queue
};

/// A heap-allocated task its owner may take back while it is still queued. Whoever moves the
/// state off `queued` first decides: a worker that reaches it runs Derived::run(), and the owner
/// frees it once run() has signalled it; an owner that abandons it (abandon() true) must not
/// touch it again, and it frees itself (delete as Derived) when a worker reaches it. Derived
/// provides `void run() noexcept`.
template <class Derived>
struct abandonable_task : task {
  explicit abandonable_task(isolation_tag tag) noexcept : task(&execute, tag) {}

  /// Owner only: true when no worker had started it.
  bool abandon() noexcept {
    // A look first: an owner that scans its tasks should not bounce the lines of running ones.
    if (state_.load(std::memory_order_relaxed) != queued) return false;
    std::uint32_t expected = queued;
    return state_.compare_exchange_strong(expected, abandoned, std::memory_order_acq_rel);
  }

 private:
  enum : std::uint32_t { queued, running, abandoned };

  static void execute(task* base) noexcept {
    auto* self = static_cast<Derived*>(base);
    std::uint32_t expected = queued;
    if (!self->state_.compare_exchange_strong(expected, running, std::memory_order_acq_rel)) {
      delete self;  // abandoned: nobody else holds it
      return;
    }
    self->run();
  }

  std::atomic<std::uint32_t> state_{queued};
};

}  // namespace parallel::detail
