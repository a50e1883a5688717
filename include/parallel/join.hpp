// parallel::join(f, g): fork-join on threads (rayon's join; oneTBB's parallel_invoke of two).
// The scheduler's side (join_latent: latent parts, handed out when a worker is hungry) is
// described in detail/scheduler/README.md.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "detail/algorithms/join.hpp"
#include "detail/scheduler/default_pools.hpp"
#include "detail/scheduler/scheduler.hpp"
#include "future.hpp"

namespace parallel {

/// Runs f() and g(), on two threads when a worker is free to take one, and returns when both
/// are done: their results as a std::pair (nothing when both return void). Meant for recursion
/// (divide and conquer, trees, quicksort): a join costs a few nanoseconds when no worker is
/// free, since g() is then only recorded, and run here after f(); a worker that runs out of
/// work takes the oldest g() recorded, the largest share, at the next join. If f or g throws,
/// join waits for the other, then rethrows the first exception (f's before g's) with its type.
///
///     std::uint64_t fib(int n) {
///       if (n < 2) return n;
///       auto [a, b] = parallel::join([n] { return fib(n - 1); }, [n] { return fib(n - 2); });
///       return a + b;
///     }
///
/// On a thread_pool's worker it uses that pool; anywhere else the default thread pool (all
/// cores), where the calling thread waits while the pool runs the join.
template <class F, class G>
auto join(F&& f, G&& g) {
  return detail::join_on(nullptr, f, g);
}

}  // namespace parallel
