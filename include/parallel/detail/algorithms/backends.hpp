// How each policy runs the verbs: one specialisation of backend<Policy> per policy. This header
// has the thread policies' (sequential, threads); process_backends.hpp (processes<Start>, from
// <parallel/process_pool.hpp>) and mpi.hpp add theirs. map.hpp only dispatches.
#pragma once

#include <memory>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>

#include "../../errors.hpp"
#include "../../policy.hpp"
#include "../no_result.hpp"
#include "../scheduler/default_pools.hpp"
#include "../scheduler/pool_lease.hpp"
#include "../scheduler/scheduler.hpp"
#include "imap_threads.hpp"
#include "map_threads.hpp"
#include "sequential.hpp"

namespace parallel::detail {

/// A policy whose backend this program has not included: processes<Start> needs
/// <parallel/process_pool.hpp>, parallel::mpi <parallel/mpi.hpp> (<parallel/parallel.hpp> has
/// every policy but mpi). map.hpp is threads-only, so that a program that runs threads parses
/// no process code.
template <class Policy>
inline constexpr bool refused_by_its_policy = false;  // the policy's own error says why
template <class Start>
inline constexpr bool refused_by_its_policy<processes<Start>> = !start_available<Start>;

template <class Policy>
struct backend {
  static_assert(refused_by_its_policy<Policy> || sizeof(Policy) == 0,
                "parallel: this policy's backend is not included: for parallel::processes<...> "
                "add #include <parallel/process_pool.hpp> (or include <parallel/parallel.hpp>), "
                "for parallel::mpi add #include <parallel/mpi.hpp>");
};

/// starmap's adapter: calls f with the elements of a tuple-like item.
template <class F>
struct apply_each {
  static constexpr bool wraps_f = true;  // callable_identity looks through it to f
  F f;
  template <class Tuple>
  decltype(auto) operator()(Tuple&& t) {
    return std::apply(f, std::forward<Tuple>(t));
  }
};

/// The thread-pool verbs, shared by parallel::threads and parallel::thread_pool.
struct threads_verbs {
  /// options.timeout cannot be kept on threads: said at the call, never ignored. (The check
  /// is inline, the message built out of line: a map of one short item pays only the compare.)
  static void refuse_timeout(const options& opts) {
    if (opts.timeout.count() > 0) [[unlikely]]
      throw_timeout_refused(opts);
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_timeout_refused(const options& opts) {
    throw error(
        "parallel: options.timeout (" + std::to_string(opts.timeout.count()) +
        " ms) is not supported on threads: a thread cannot be stopped from outside, so the call "
        "could not end a task that outlives it. Use parallel::processes<...>{} or a "
        "parallel::process_pool (a worker whose task outlives the timeout is killed and "
        "replaced, and the call raises parallel::timeout_error), or check a deadline inside f");
  }

  /// `pool` may be null when `plain` is yes: parallel::threads decided before leasing one
  /// (threads_map_in_caller).
  template <class F, class Range>
  static auto map(scheduler* pool, F& f, Range& items, const options& opts,
                  plain_loop plain = plain_loop::ask) {
    refuse_timeout(opts);
    return map_on_threads(pool, f, items, opts, plain);
  }

  /// The lease lives as long as the lazy range.
  template <bool Ordered, class F, class Range>
  static auto imap(pool_lease pool, F&& f, Range&& items, const options& opts) {
    refuse_timeout(opts);
    using Fn = std::decay_t<F>;
    using View = held_range<Range>;
    if constexpr (std::is_void_v<sequential_result_t<Fn, View>>) {
      using state = threaded_imap_state<unit_returning<Fn>, View, Ordered>;
      return imap_view<state>(std::make_unique<state>(std::move(pool),
                                                      unit_returning<Fn>{std::forward<F>(f)},
                                                      View(std::forward<Range>(items)), opts));
    } else {
      using state = threaded_imap_state<Fn, View, Ordered>;
      return imap_view<state>(std::make_unique<state>(std::move(pool), std::forward<F>(f),
                                                      View(std::forward<Range>(items)), opts));
    }
  }
};

template <>
struct backend<threads> {
  template <class F, class Range>
  static auto map(const threads& p, F& f, Range& items, const options& opts) {
    const plain_loop plain = threads_map_in_caller(f, items, opts);
    if (plain == plain_loop::yes) return threads_verbs::map(nullptr, f, items, opts, plain);
    return map_leased(p.workers, f, items, opts, plain);
  }
  // Out of line, as map_on_pool is: the lease is not in the frame of a call that needs none.
  template <class F, class Range>
  [[gnu::noinline]] static auto map_leased(int workers, F& f, Range& items, const options& opts,
                                           plain_loop plain) {
    const pool_lease pool = default_pools::lease(workers);
    return threads_verbs::map(&pool.pool(), f, items, opts, plain);
  }
  template <bool Ordered, class F, class Range>
  static auto imap(const threads& p, F&& f, Range&& items, const options& opts) {
    return threads_verbs::imap<Ordered>(default_pools::lease(p.workers), std::forward<F>(f),
                                        std::forward<Range>(items), opts);
  }
};

template <>
struct backend<sequential> {
  template <class F, class Range>
  static auto map(const sequential&, F& f, Range& items, const options& opts) {
    return map_sequential(f, items, opts);
  }
  // Sequential imap is lazy and in order either way: completion order is input order.
  template <bool Ordered, class F, class Range>
  static auto imap(const sequential&, F&& f, Range&& items, const options& opts) {
    using Fn = std::decay_t<F>;
    using View = held_range<Range>;
    if constexpr (std::is_void_v<sequential_result_t<Fn, View>>)
      return sequential_imap<unit_returning<Fn>, View>(unit_returning<Fn>{std::forward<F>(f)},
                                                       View(std::forward<Range>(items)), opts);
    else
      return sequential_imap<Fn, View>(std::forward<F>(f), View(std::forward<Range>(items)), opts);
  }
};

}  // namespace parallel::detail
