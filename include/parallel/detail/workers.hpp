// What a `workers` count of the policies and pools means (threads{.workers}, processes{.workers},
// thread_pool, pool_options::workers): the one reading of it that every backend shares.
#pragma once

#include <cstddef>

#include "platform.hpp"

namespace parallel::detail {

/// 0 = all cores, n > 0 = n, n < 0 = all cores but |n|; at least 1. The core count is read once
/// (as oneTBB and OpenMP do): asking the kernel on every call would cost more than a small map.
inline std::size_t resolve_workers(int requested) noexcept {
  static const auto cores = static_cast<long long>(os::available_cores());
  const long long n = requested == 0 ? cores : requested > 0 ? requested : cores + requested;
  return static_cast<std::size_t>(n < 1 ? 1 : n);
}

}  // namespace parallel::detail
