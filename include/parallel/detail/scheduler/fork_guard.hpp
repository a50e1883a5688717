// What the thread backend does about fork(): a forked child has only the forking thread, so the
// pools it inherited have no workers. The child forgets them (the default pools are created
// again on first use) and any pool object built before the fork refuses work with a clear error
// instead of waiting forever for threads that do not exist.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "../platform.hpp"

namespace parallel::detail::fork_guard {

/// Bumped in every forked child; a scheduler remembers the value it was built under.
inline std::atomic<std::uint64_t>& generation() noexcept {
  static std::atomic<std::uint64_t> value{0};
  return value;
}

/// Guards the table of default pools; held across fork() so the child never inherits it locked.
inline std::mutex& registry_mutex() noexcept {
  static std::mutex m;
  return m;
}

/// Set by the default-pool table: forgets (leaks) the inherited pools in a forked child.
using child_hook = void (*)();
inline child_hook& forget_pools_in_child() noexcept {
  static child_hook hook = nullptr;
  return hook;
}

inline void install() {
  static const bool installed = [] {
    os::on_fork([] { registry_mutex().lock(); }, [] { registry_mutex().unlock(); },
                [] {
                  generation().fetch_add(1, std::memory_order_relaxed);
                  if (auto hook = forget_pools_in_child()) hook();
                  registry_mutex().unlock();
                });
    return true;
  }();
  (void)installed;
}

}  // namespace parallel::detail::fork_guard
