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

#include "detail/scheduler/default_pools.hpp"
#include "detail/scheduler/scheduler.hpp"
#include "future.hpp"

namespace parallel {
namespace detail {

// A join from a thread that is not a worker of `pool`: it runs on a worker, where the joins
// inside it cost next to nothing, and this thread waits, as it does for a map.
template <class Left, class Right>
void join_from_outside(scheduler& pool, Left& left, Right& right) {
  if (pool.size() == 0) {  // a default pool that got no thread: this thread runs both
    left();
    right();
    return;
  }
  submit_to(pool, [&pool, &left, &right] { pool.join_latent(left, right); }).get();
}

// `pool`: thread_pool::join's own; null for parallel::join (the calling worker's pool, or else
// the default pool).
template <class Left, class Right>
void join_parts(scheduler* pool, Left& left, Right& right) {
  if (pool == nullptr) {
    if (scheduler::join_here(left, right)) return;
    const pool_lease lease = default_pools::lease(0);
    join_from_outside(lease.pool(), left, right);
  } else if (pool->on_worker()) {
    pool->join_latent(left, right);
  } else {
    join_from_outside(*pool, left, right);
  }
}

template <class F, class G>
auto join_on(scheduler* pool, F& f, G& g) {
  using A = std::invoke_result_t<F&>;
  using B = std::invoke_result_t<G&>;
  static_assert(std::is_void_v<A> == std::is_void_v<B>,
                "parallel::join(f, g): f and g must both return a value, or both return void");
  if constexpr (std::is_void_v<A>) {
    auto left = [&f] { std::invoke(f); };
    auto right = [&g] { std::invoke(g); };
    join_parts(pool, left, right);
  } else {
    std::optional<std::remove_cvref_t<A>> a;
    std::optional<std::remove_cvref_t<B>> b;
    auto left = [&f, &a] { a.emplace(std::invoke(f)); };
    auto right = [&g, &b] { b.emplace(std::invoke(g)); };
    join_parts(pool, left, right);
    return std::pair<std::remove_cvref_t<A>, std::remove_cvref_t<B>>(std::move(*a), std::move(*b));
  }
}

}  // namespace detail

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
