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

}  // namespace parallel::detail
