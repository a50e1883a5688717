// How parallel::join (join.hpp) runs its two calls: on the pool of the worker that calls it, the
// right one offered to thieves and the left one run at once; from a thread that is not a worker,
// both on a worker while that thread waits, as it does for a map.
#pragma once

#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "../futures/state.hpp"
#include "../scheduler/default_pools.hpp"
#include "../scheduler/scheduler.hpp"

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

}  // namespace parallel
