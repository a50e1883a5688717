// parallel::future<R>: the result of pool.submit (Python's apply_async / executor.submit), with
// cancel() and then(), and the waits on many futures: as_completed, wait_any, wait_all.
// One allocation holds the task, its arguments and its result; no std::promise, no mutex.
// How a completion reaches continuations and waiters: detail/futures/completion.hpp.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <new>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/futures/completion.hpp"
#include "detail/futures/state.hpp"
#include "detail/scheduler/scheduler.hpp"
#include "errors.hpp"

namespace parallel {

/// The result of `pool.submit(f, args...)`. get() waits and returns the value or rethrows the
/// task's exception with its own type. Waiting inside a pool task runs other tasks meanwhile.
/// cancel() takes back a task that has not started; then(g) chains g on the result. Like
/// std::future, one future is used by one thread at a time.
///
///     parallel::future<int> f = pool.submit(add, 1, 2);
///     parallel::future<int> g = pool.submit(add, 3, 4).then([](int r) { return 2 * r; });
///     int three = f.get();
template <class R>
class future {
 public:
  future() noexcept = default;
  future(future&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  future& operator=(future&& other) noexcept {
    if (this != &other) {
      drop();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  future(const future&) = delete;
  future& operator=(const future&) = delete;
  /// Dropping a future does not cancel its task; the task still runs (call cancel() first to
  /// take back a task that has not started).
  ~future() { drop(); }

  /// True until get() or then() is called (and for a default-constructed future, false).
  bool valid() const noexcept { return state_ != nullptr; }

  /// Ready when the task has finished (with a value or an exception), or was cancelled.
  bool is_ready() const noexcept {
    return state_ != nullptr && (state_->cancelled_ || state_->done_.is_set());
  }

  void wait() const {
    check();
    if (state_->cancelled_) return;
    if (state_->pool_ != nullptr) {
      state_->pool_->wait(state_->done_, state_->tag_);
      return;
    }
    if (state_->help_ != nullptr) state_->help_(state_, 0);
    detail::scheduler::block(state_->done_, nullptr);
  }

  template <class Rep, class Period>
  std::future_status wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return wait_until(std::chrono::steady_clock::now() +
                      std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }

  std::future_status wait_until(std::chrono::steady_clock::time_point deadline) const {
    check();
    if (state_->cancelled_) return std::future_status::ready;
    // Helping takes some tens of microseconds when it does not finish the task: not for a
    // deadline that close (a poll with wait_for(0ms) returns at once).
    if (state_->pool_ == nullptr && state_->help_ != nullptr && !state_->done_.is_set() &&
        deadline - std::chrono::steady_clock::now() > std::chrono::milliseconds(1))
      state_->help_(state_,
                    static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                   deadline - std::chrono::steady_clock::now())
                                                   .count()));
    const bool ready = state_->pool_ != nullptr
                           ? state_->pool_->wait_until(state_->done_, state_->tag_, deadline)
                           : detail::scheduler::block(state_->done_, &deadline);
    return ready ? std::future_status::ready : std::future_status::timeout;
  }

  /// Waits, then returns the result or rethrows the task's exception (parallel::cancelled_error
  /// for a cancelled task). The future is then empty. Inside a task of the same pool, a task
  /// this thread submitted that no other thread has started runs right here (a recursive
  /// submit/get costs little more than the calls).
  R get() {
    check();
    const bool alone = run_here();
    if (!alone) wait();
    std::unique_ptr<detail::future_state<R>, releaser> state(std::exchange(state_, nullptr),
                                                             releaser{alone});
    // Take the exception out of the shared state: whichever side frees the state last must not
    // be the one dropping the exception the caller is still handling.
    if (std::exception_ptr error = std::move(state->error_)) {
      state.reset();
      std::rethrow_exception(std::move(error));
    }
    if constexpr (!std::is_void_v<R>) return std::move(*state->value_);
  }

  /// Takes back a task that has not started (Python's Future.cancel): true when it never will
  /// run, and get() then throws parallel::cancelled_error; false when it is running or done (it
  /// goes on; nothing is interrupted). On a thread pool, a queued task; on a process pool or an
  /// MPI pool, one that no worker has started (queued in the pool, or sent ahead to a worker and
  /// not begun there). On then()'s future: g will not run (the source still does). Calling it
  /// again after it succeeded returns true again.
  ///
  /// cancel(parallel::if_running::kill) on a process pool also stops a task that is running:
  /// its worker process is killed (the task gets no chance to clean up, like a timeout) and
  /// replaced, the other tasks go on, and cancel returns true. Threads and MPI ranks are not
  /// killed: there it is cancel().
  bool cancel(if_running running = if_running::keep) {
    check();
    if (state_->cancelled_) return true;
    if (state_->cancel_ == nullptr || state_->hooks_.fired()) return false;
    // Both errors exist before the task is taken: once it is, nothing may fail.
    std::exception_ptr before = std::make_exception_ptr(
        cancelled_error("parallel: the task was cancelled (future::cancel) before it started; it "
                        "never ran"));
    std::exception_ptr killed;
    if (running == if_running::kill)
      killed = std::make_exception_ptr(
          cancelled_error("parallel: the task was cancelled while it ran "
                          "(future::cancel(parallel::if_running::kill)); its worker process was "
                          "killed and replaced"));
    const detail::cancel_outcome outcome = state_->cancel_(state_, running);
    if (outcome == detail::cancel_outcome::refused) return false;
    state_->error_ =
        outcome == detail::cancel_outcome::before_start ? std::move(before) : std::move(killed);
    state_->cancelled_ = true;
    state_->hooks_.fire_all();  // as_completed, wait_any and wait_all see it done
    return true;
  }

  /// A future of g(result) (Python's add_done_callback, returning g's result): g runs once the
  /// result is there, without a thread waiting for it; g takes the result by value (nothing for
  /// future<void>). If the task threw (or was cancelled), g is skipped and its future holds that
  /// exception; an exception thrown by g goes to its future too. This future is taken over: it is
  /// empty afterwards (valid() == false), as with std::experimental::future::then.
  /// g runs on the thread pool that ran the task, on the default thread pool for a process or
  /// MPI pool's task, or at once on the calling thread when the result is already there.
  ///
  ///     auto label = pool.submit(square, 4).then([](int r) { return std::to_string(r); });
  template <class G>
  auto then(G&& g) -> future<detail::then_result_t<R, std::decay_t<G>>> {
    using Fn = std::decay_t<G>;
    using R2 = detail::then_result_t<R, Fn>;
    check();
    const auto [pool, tag] = detail::continuation_home(*state_);
    auto* next = new detail::continuation<R, R2, Fn>(state_, Fn(std::forward<G>(g)), *pool, tag);
    state_ = nullptr;  // the continuation holds the source now
    next->attach();
    return detail::future_access::make<R2>(next);
  }

 private:
  template <class F, class... Args>
  friend future<detail::submit_result_t<F, Args...>> detail::submit_to(detail::scheduler&, F&&,
                                                                       Args&&...);
  friend struct detail::future_access;

  struct releaser {
    bool alone = false;  // only this future holds the state (run_here): it frees it
    void operator()(detail::future_state<R>* s) const noexcept {
      if (alone)
        s->destroy_(s);
      else
        s->release();
    }
  };

  // A task that this thread, a worker of its pool, spawned and nobody took yet runs here, in
  // get(): a recursive submit/get (fib) is mostly that. True when it ran so; only this future
  // holds the state then.
  bool run_here() {
    detail::future_state<R>* s = state_;
    return s->run_here_ != nullptr && s->pool_ != nullptr && !s->cancelled_ &&
           s->pool_->run_if_newest(s, [s] { s->run_here_(s); });
  }

  explicit future(detail::future_state<R>* state) noexcept : state_(state) {}

  void check() const {
    if (state_ == nullptr) throw std::future_error(std::future_errc::no_state);
  }

  void drop() noexcept {
    if (state_ != nullptr) std::exchange(state_, nullptr)->release();
  }

  detail::future_state<R>* state_ = nullptr;
};

}  // namespace parallel
