// The state a parallel::future reads (future.hpp is what a program includes): one allocation
// that holds the task, its arguments and its result, how it completes, how it is cancelled,
// and what then() chains on it. Process pools hand out futures of states of their own
// (future_access), so this is below the backends and the public future.
#pragma once

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

#include "../block_cache.hpp"
#include "../scheduler/default_pools.hpp"
#include "../scheduler/scheduler.hpp"
#include "cancel_outcome.hpp"
#include "completion.hpp"

namespace parallel {

template <class R>
class future;

/// What future::cancel does to a task that is already running: leave it running (the result
/// stands and cancel() returns false), or, on a process pool, kill the worker process running it
/// (the worker is replaced, and the task's result is never delivered). A thread cannot be
/// killed: on threads and MPI, kill acts as keep.
/// \headerfile future.hpp <parallel/future.hpp>
enum class if_running : std::uint8_t { keep, kill };

namespace detail {

/// Decides, once, whether a queued task runs (its worker takes it) or never does (cancel).
class run_claim {
 public:
  bool start() noexcept { return claim(running); }
  bool cancel() noexcept { return claim(cancelled); }

 private:
  enum : std::uint8_t { queued, running, cancelled };
  bool claim(std::uint8_t to) noexcept {
    std::uint8_t expected = queued;
    return phase_.compare_exchange_strong(expected, to, std::memory_order_acq_rel);
  }
  std::atomic<std::uint8_t> phase_{queued};
};

/// Shared by the task (while queued or running) and the future. Owned by the future, unless the
/// future is dropped before the task ends: then done_ is detached and the task frees it. No
/// reference count: the latch word already says who is last.
///
/// The completer writes the result, fires the hooks (continuations, waiters on many futures),
/// then sets the latch: complete(). A cancelled task is taken off by its future: cancel_ makes
/// sure it never runs; the future then writes the cancelled_error and fires the hooks itself.
template <class R>
struct future_state : task {
  using destroy_fn = void (*)(future_state*) noexcept;
  /// The future's side of cancel(): before_start or killed when the task will never deliver
  /// (nothing but the future touches the result then). Null: this kind of task cannot be
  /// cancelled.
  using cancel_fn = cancel_outcome (*)(future_state*, if_running);

  /// Runs the task in the thread of its future's get(), which took it back from its own
  /// deque before anyone started it (scheduler::run_if_newest): the result is written and the
  /// hooks fired, nothing more. Nobody else holds the state then: no claim against cancel() (the
  /// future's own, which get() is not racing), no latch, and get() frees it. Null: this kind of
  /// task is not run so.
  using run_here_fn = void (*)(future_state*) noexcept;

  /// `pool` is null for a result made elsewhere (a process pool): waiting then just sleeps.
  future_state(execute_fn execute, destroy_fn destroy, scheduler* pool, isolation_tag tag,
               cancel_fn cancel = nullptr, run_here_fn run_here = nullptr)
      : task(execute, tag), destroy_(destroy), cancel_(cancel), run_here_(run_here), pool_(pool) {}

  /// The future lets go of the state.
  void release() noexcept {
    if (!done_.detach()) destroy_(this);  // already done: nobody else holds it
  }

  /// The completer's last steps, after the result is written. The state may be gone after it.
  void complete() noexcept {
    hooks_.fire_all();
    if (done_.set()) destroy_(this);  // the future was dropped unread
  }

  /// The future's side: the result is there (or the task was cancelled). Hooks fire a few
  /// instructions before the latch is set; this waits out that gap.
  void settle() const noexcept {
    while (!cancelled_ && !done_.is_set()) std::this_thread::yield();
  }

  destroy_fn destroy_;
  cancel_fn cancel_;
  run_here_fn run_here_;
  scheduler* pool_;
  /// For a result made elsewhere (pool_ null): what a thread that waits for it does before it
  /// sleeps (on a process pool, it drives the pool while jobs are short), until the latch is set
  /// or for at most `within_ns` (0: no limit). Null: it just sleeps.
  void (*help_)(future_state*, std::uint64_t within_ns) = nullptr;
  latch done_;
  hook_list hooks_;
  bool cancelled_ = false;  // the future's own: its cancel() succeeded
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value_{};
  std::exception_ptr error_;
};

/// Lets other backends (process pools) hand out futures of their own states.
struct future_access {
  template <class R>
  static future<R> make(future_state<R>* state) noexcept {
    return future<R>(state);
  }
  template <class R>
  static future_state<R>* state(future<R>& f) noexcept {
    return f.state_;
  }
};

template <class R, class Call>
struct submitted_task final : future_state<R> {
  submitted_task(scheduler& pool, isolation_tag tag, Call&& call)
      : future_state<R>(&execute, &destroy, &pool, tag, &cancel, &run_here),
        call_(std::move(call)) {}

  // A cancelled task stays in its queue (a work-stealing deque cannot give one up): taken, it
  // only sets the latch, the last word on who frees the state.
  static void execute(task* base) noexcept {
    auto* self = static_cast<submitted_task*>(base);
    if (self->claim_.start()) self->call();
    self->complete();
  }

  // A recursive submit/get (fib) takes most of its tasks back this way: 3 of the 6 locked
  // operations of a task skipped (the claim, the latch, the hand-over of the state).
  static void run_here(future_state<R>* base) noexcept {
    auto* self = static_cast<submitted_task*>(base);
    self->call();
    self->hooks_.fire_all();  // as_completed or wait_any may watch it on this thread
  }

  void call() noexcept {
    try {
      if constexpr (std::is_void_v<R>) {
        (*call_)();
      } else {
        this->value_.emplace((*call_)());
      }
    } catch (...) {
      this->error_ = std::current_exception();
    }
    // The call (and what it captured) ends before the future sees the result.
    call_.reset();
  }

  static cancel_outcome cancel(future_state<R>* base, if_running) {
    auto* self = static_cast<submitted_task*>(base);
    if (!self->claim_.cancel()) return cancel_outcome::refused;
    self->call_.reset();  // its captures go now, not when a worker reaches the task
    return cancel_outcome::before_start;
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

  run_claim claim_;
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

/// What fut.then(g) gives: g's result, from the source's value (or from nothing, for a void
/// source).
template <class R, class G>
struct then_result {
  using type = std::remove_cvref_t<std::invoke_result_t<G&, R&&>>;
};
template <class G>
struct then_result<void, G> {
  using type = std::remove_cvref_t<std::invoke_result_t<G&>>;
};
template <class R, class G>
using then_result_t = typename then_result<R, G>::type;

/// fut.then(g): the state of g's future, and the hook that the source's completion fires. It
/// holds the source in place of the source's future (then() takes the future over).
///
/// Where g runs: a thread pool's source was completed by one of that pool's workers, which
/// queues g on its own deque (a continuation, run next by that worker or stolen). A process
/// pool's (or MPI pool's) source is completed by the pool's I/O thread, which must not run user
/// code: a long g there would hold up every other result of the pool, and a g that waits for
/// another future of the same pool would wait for itself. So g goes to the default thread pool
/// (parallel::threads{}'s). A source already complete when then() is called runs g at once on
/// the calling thread, as Python's add_done_callback does.
template <class R, class R2, class G>
struct continuation final : future_state<R2>, completion_hook {
  continuation(future_state<R>* source, G&& g, scheduler& pool, isolation_tag tag)
      : future_state<R2>(&execute, &destroy, &pool, tag, &cancel),
        completion_hook(&on_source_done),
        source_(source),
        g_(std::move(g)) {}

  /// Runs g now when the source is complete, else when it completes.
  void attach() {
    if (!source_->hooks_.add(this)) execute(this);
  }

  static void on_source_done(completion_hook* hook) noexcept {
    auto* self = static_cast<continuation*>(hook);
    scheduler* pool = self->pool_;
    if (pool->size() == 0) {  // a pool the system gave no threads: nobody else would run it
      execute(self);
      return;
    }
    try {
      pool->spawn(self);
    } catch (...) {  // no memory to queue it: run it here rather than never
      execute(self);
    }
  }

  static void execute(task* base) noexcept {
    auto* self = static_cast<continuation*>(base);
    future_state<R>* source = std::exchange(self->source_, nullptr);
    if (self->claim_.start()) {
      if (source->error_) {
        self->error_ = std::move(source->error_);  // g is skipped; its future gets the error
      } else {
        try {
          if constexpr (std::is_void_v<R> && std::is_void_v<R2>)
            std::invoke(*self->g_);
          else if constexpr (std::is_void_v<R>)
            self->value_.emplace(std::invoke(*self->g_));
          else if constexpr (std::is_void_v<R2>)
            std::invoke(*self->g_, std::move(*source->value_));
          else
            self->value_.emplace(std::invoke(*self->g_, std::move(*source->value_)));
        } catch (...) {
          self->error_ = std::current_exception();
        }
      }
      self->g_.reset();
    }
    source->release();  // as its future would
    self->complete();
  }

  static cancel_outcome cancel(future_state<R2>* base, if_running) {
    auto* self = static_cast<continuation*>(base);
    if (!self->claim_.cancel()) return cancel_outcome::refused;
    self->g_.reset();
    return cancel_outcome::before_start;
  }

  static void destroy(future_state<R2>* base) noexcept { delete static_cast<continuation*>(base); }

  future_state<R>* source_;
  run_claim claim_;
  std::optional<G> g_;
};

/// Where a continuation of `source` is queued (see continuation), and with which tag.
template <class R>
std::pair<scheduler*, isolation_tag> continuation_home(const future_state<R>& source) {
  if (source.pool_ != nullptr) return {source.pool_, source.tag_};
  scheduler& fallback = default_pools::lease(0).pool();  // never destroyed: a borrow
  return {&fallback, fallback.current_tag()};
}

}  // namespace detail

}  // namespace parallel
