// parallel::future<R>: the result of pool.submit (Python's apply_async / executor.submit).
// One allocation holds the task, its arguments and its result; no std::promise, no mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

#include "detail/block_cache.hpp"
#include "detail/scheduler/scheduler.hpp"
#include "errors.hpp"

namespace parallel {

template <class R>
class future;

namespace detail {

/// Shared by the task (while queued or running) and the future. Owned by the future, unless the
/// future is dropped before the task ends: then done_ is detached and the task frees it. No
/// reference count: the latch word already says who is last.
template <class R>
struct future_state : task {
  using destroy_fn = void (*)(future_state*) noexcept;

  /// `pool` is null for a result made elsewhere (a process pool): waiting then just sleeps.
  future_state(execute_fn execute, destroy_fn destroy, scheduler* pool, isolation_tag tag)
      : task(execute, tag), destroy_(destroy), pool_(pool) {}

  /// The future lets go of the state.
  void release() noexcept {
    if (!done_.detach()) destroy_(this);  // already done: nobody else holds it
  }

  destroy_fn destroy_;
  scheduler* pool_;
  latch done_;
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value_{};
  std::exception_ptr error_;
};

/// Lets other backends (process pools) hand out futures of their own states.
struct future_access {
  template <class R>
  static future<R> make(future_state<R>* state) noexcept {
    return future<R>(state);
  }
};

template <class R, class Call>
struct submitted_task final : future_state<R> {
  submitted_task(scheduler& pool, isolation_tag tag, Call&& call)
      : future_state<R>(&execute, &destroy, &pool, tag), call_(std::move(call)) {}

  static void execute(task* base) noexcept {
    auto* self = static_cast<submitted_task*>(base);
    try {
      if constexpr (std::is_void_v<R>) {
        (*self->call_)();
      } else {
        self->value_.emplace((*self->call_)());
      }
    } catch (...) {
      self->error_ = std::current_exception();
    }
    // The call (and what it captured) ends before the future sees the result.
    self->call_.reset();
    if (self->done_.set()) destroy(self);  // the future was dropped unread
  }

  static void destroy(future_state<R>* base) noexcept { delete static_cast<submitted_task*>(base); }

  // Blocks come from a per-thread cache (recursive submit/get allocates at the task rate).
  static constexpr bool cached = alignof(std::max_align_t) % alignof(submitted_task) == 0;
  static void* operator new(std::size_t size) {
    if constexpr (cached)
      return block_cache<block_size_for(sizeof(submitted_task))>::allocate();
    else
      return ::operator new (size, std::align_val_t{alignof(submitted_task)});
  }
  static void operator delete(void* block) noexcept {
    if constexpr (cached)
      block_cache<block_size_for(sizeof(submitted_task))>::deallocate(block);
    else
      ::operator delete (block, std::align_val_t{alignof(submitted_task)});
  }

  std::optional<Call> call_;
};

template <class F, class... Args>
using submit_result_t =
    std::remove_cvref_t<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>>;

/// Queues f(args...) on `pool`; f and the arguments are decay-copied and then passed as rvalues,
/// as std::async does (so move-only arguments work).
template <class F, class... Args>
future<submit_result_t<F, Args...>> submit_to(scheduler& pool, F&& f, Args&&... args) {
  using R = submit_result_t<F, Args...>;
  auto call = [fn = std::forward<F>(f), ... as = std::forward<Args>(args)]() mutable -> R {
    return std::invoke(std::move(fn), std::move(as)...);
  };
  auto* state = new submitted_task<R, decltype(call)>(pool, pool.current_tag(), std::move(call));
  pool.spawn(state);
  return future<R>(state);
}

}  // namespace detail

/// The result of `pool.submit(f, args...)`. get() waits and returns the value or rethrows the
/// task's exception with its own type. Waiting inside a pool task runs other tasks meanwhile.
///
///     parallel::future<int> f = pool.submit(add, 1, 2);
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
  /// Dropping a future does not cancel its task; the task still runs.
  ~future() { drop(); }

  /// True until get() is called (and for a default-constructed future, false).
  bool valid() const noexcept { return state_ != nullptr; }

  /// Ready when the task has finished (with a value or an exception).
  bool is_ready() const noexcept { return state_ != nullptr && state_->done_.is_set(); }

  void wait() const {
    check();
    if (state_->pool_ != nullptr)
      state_->pool_->wait(state_->done_, state_->tag_);
    else
      detail::scheduler::block(state_->done_, nullptr);
  }

  template <class Rep, class Period>
  std::future_status wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return wait_until(std::chrono::steady_clock::now() +
                      std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }

  std::future_status wait_until(std::chrono::steady_clock::time_point deadline) const {
    check();
    const bool ready = state_->pool_ != nullptr
                           ? state_->pool_->wait_until(state_->done_, state_->tag_, deadline)
                           : detail::scheduler::block(state_->done_, &deadline);
    return ready ? std::future_status::ready : std::future_status::timeout;
  }

  /// Waits, then returns the result or rethrows the task's exception. The future is then empty.
  R get() {
    wait();
    std::unique_ptr<detail::future_state<R>, releaser> state(std::exchange(state_, nullptr));
    // Take the exception out of the shared state: whichever side frees the state last must not
    // be the one dropping the exception the caller is still handling.
    if (std::exception_ptr error = std::move(state->error_)) {
      state.reset();
      std::rethrow_exception(std::move(error));
    }
    if constexpr (!std::is_void_v<R>) return std::move(*state->value_);
  }

 private:
  template <class F, class... Args>
  friend future<detail::submit_result_t<F, Args...>> detail::submit_to(detail::scheduler&, F&&,
                                                                       Args&&...);
  friend struct detail::future_access;

  struct releaser {
    void operator()(detail::future_state<R>* s) const noexcept { s->release(); }
  };

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
