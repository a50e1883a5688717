// parallel::thread_pool: a pool object of its own, for reuse across calls and for submit
// (Python's ThreadPool / ThreadPoolExecutor). The scheduler itself lives in detail/scheduler.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <cstddef>
#include <functional>
#include <memory>
#include <ranges>
#include <utility>

#include "detail/algorithms/backends.hpp"
#include "detail/algorithms/void_results.hpp"
#include "detail/scheduler/default_pools.hpp"
#include "detail/scheduler/pool_lease.hpp"
#include "detail/scheduler/scheduler.hpp"
#include "detail/workers.hpp"
#include "errors.hpp"
#include "future.hpp"
#include "join.hpp"
#include "policy.hpp"
#include "worker_state.hpp"

namespace parallel {

/// How a thread_pool is built, beyond its size:
///
///     parallel::thread_pool pool{{.workers = 4,
///                                 .initializer = [path] { open_log(path); },  // initargs
///                                 .on_exit = [] { flush_log(); }}};
struct thread_pool_options {
  /// 0 = all cores, n > 0 = n, n < 0 = all cores but |n| (at least 1).
  int workers = 0;
  /// Runs once on each worker thread before it takes any task (Python's initializer; its
  /// initargs are what the callable captures); the constructor returns when it has run on
  /// every worker. If it throws on any, the constructor throws parallel::error naming the
  /// exception (after the other workers ran their on_exit).
  std::function<void()> initializer{};
  /// Runs on each worker thread as the pool ends, after the thread's last task (mpire's
  /// worker_exit), and before its parallel::worker_state objects are destroyed. An exception
  /// from it ends the program (std::terminate), as one from a destructor would.
  std::function<void()> on_exit{};
  // With either hook the pool's items run on its own threads only, never inline in the
  // calling thread (which a small map on a plain pool does).
};

/// A work-stealing pool of threads. Verbs and tasks may nest freely (a task may call map or wait
/// on a future): a waiting thread runs pending work of its own call meanwhile, so nothing
/// deadlocks, even with one worker.
///
///     parallel::thread_pool pool{4};                 // 0 = all cores, -1 = all cores but one
///     auto squares = pool.map(square, xs);
///     parallel::future<int> sum = pool.submit(add, 1, 2);
class thread_pool {
 public:
  explicit thread_pool(int workers = 0)
      : scheduler_(std::make_unique<detail::scheduler>(detail::resolve_workers(workers))) {}

  /// A pool whose threads run `opts.initializer` first and `opts.on_exit` last.
  explicit thread_pool(thread_pool_options opts)
      : scheduler_(std::make_unique<detail::scheduler>(
            detail::resolve_workers(opts.workers), detail::on_thread_refused::fail,
            "parallel::thread_pool",
            detail::worker_hooks{std::move(opts.initializer), std::move(opts.on_exit)})) {}

  thread_pool(thread_pool&&) noexcept = default;
  thread_pool& operator=(thread_pool&&) noexcept = default;

  /// Runs every task already submitted, then stops the workers.
  ~thread_pool() {
    // In a child forked after the pool was built the workers do not exist: nothing to join.
    if (scheduler_ != nullptr && !scheduler_->usable()) (void)scheduler_.release();
  }

  /// Number of worker threads.
  std::size_t size() const noexcept { return scheduler_->size(); }

  template <class F, std::ranges::input_range Range>
  auto map(F&& f, Range&& items, const options& opts = {}) {
    return detail::map_outcome(
        [&] { return detail::threads_verbs::map(&checked(), f, items, opts); });
  }

  template <class F, std::ranges::input_range Range>
  auto starmap(F&& f, Range&& items, const options& opts = {}) {
    detail::apply_each<F&> each{f};
    return detail::map_outcome(
        [&] { return detail::threads_verbs::map(&checked(), each, items, opts); });
  }

  template <class F, std::ranges::input_range Range>
  auto imap(F&& f, Range&& items, const options& opts = {}) {
    return detail::imap_outcome(
        detail::threads_verbs::imap<true>(detail::pool_lease::borrow(checked()), std::forward<F>(f),
                                          std::forward<Range>(items), opts));
  }

  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F&& f, Range&& items, const options& opts = {}) {
    return detail::imap_outcome(
        detail::threads_verbs::imap<false>(detail::pool_lease::borrow(checked()),
                                           std::forward<F>(f), std::forward<Range>(items), opts));
  }

  /// parallel::join(f, g) on this pool: f() and g() on two of its threads when one is free, their
  /// results as a std::pair (nothing when both return void).
  template <class F, class G>
  auto join(F&& f, G&& g) {
    return detail::join_on(&checked(), f, g);
  }

  /// Runs f(args...) on the pool (Python's apply_async). f and args are copied or moved in.
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    return detail::submit_to(checked(), std::forward<F>(f), std::forward<Args>(args)...);
  }

 private:
  detail::scheduler& checked() const {
    if (!scheduler_->usable())
      throw error(
          "parallel::thread_pool: this pool was created before fork(), and its threads do not "
          "exist in the child process; create a new thread_pool in the child (parallel::threads{} "
          "does so by itself)");
    return *scheduler_;
  }

  std::unique_ptr<detail::scheduler> scheduler_;
};

}  // namespace parallel
