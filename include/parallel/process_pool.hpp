// parallel::process_pool<Start>: worker processes kept for reuse across calls (Python's Pool /
// ProcessPoolExecutor), with map, starmap, imap, imap_unordered and submit. Each task ships its
// function (as a code location, the same in every process of this executable), the function's
// captures and its arguments; results come back through the codec.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "codec.hpp"
#include "detail/algorithms/process_verbs.hpp"
#include "detail/algorithms/void_results.hpp"
#include "detail/ipc/engine.hpp"
#include "detail/ipc/spawn_start.hpp"
#include "detail/ipc/start_plan.hpp"
#include "detail/ipc/worker.hpp"
#include "detail/no_result.hpp"
#include "detail/process_platform.hpp"
#include "detail/scheduler/default_pools.hpp"
#include "errors.hpp"
#include "future.hpp"
#include "policy.hpp"

namespace parallel {

/// Options of a process_pool.
///
///     parallel::process_pool<> pool{{.workers = 4, .max_tasks_per_child = 100, .initializer =
///     init}};
struct pool_options {
  /// 0 = all cores, n > 0 = n, n < 0 = all cores but |n| (at least 1).
  int workers = 0;
  /// A worker is replaced by a fresh one after this many tasks (chunks); 0 = never.
  std::size_t max_tasks_per_child = 0;
  /// Runs once in each worker before its first task. If it throws, the pool's calls fail with
  /// parallel::spawn_error naming the exception.
  void (*initializer)() = nullptr;
  /// A worker whose initializer has not returned within this time is stopped, and the calls
  /// waiting for it fail with parallel::spawn_error; a call with options.timeout waits for a
  /// worker no longer than that timeout. 0 = no limit.
  std::chrono::milliseconds start_timeout = std::chrono::seconds(60);
};

namespace detail {

/// The pool's engine and the thread that drives it. Workers are started by that thread, which
/// lives as long as the pool: Linux ties PR_SET_PDEATHSIG to the thread that forked.
/// An exception like `error`, as an object of its own (each caller that rethrows it owns it).
inline std::exception_ptr copy_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::bad_alloc&) {
    return std::make_exception_ptr(std::bad_alloc());
  } catch (const spawn_error& e) {
    return std::make_exception_ptr(spawn_error(e.what()));
  } catch (const std::exception& e) {
    return std::make_exception_ptr(parallel::error(e.what()));
  } catch (...) {
    return std::make_exception_ptr(parallel::error("parallel: the pool's loop failed"));
  }
}

class process_pool_core {
 public:
  process_pool_core(const pool_options& opts, start_plan plan)
      : workers_(resolve_workers(opts.workers)), opts_(opts), plan_(std::move(plan)) {
    refuse_in_spawned_child();
    io_ = std::thread([this] { loop(); });
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return ready_; });
    if (startup_error_) {
      lock.unlock();
      io_.join();
      std::rethrow_exception(startup_error_);
    }
  }

  process_pool_core(const process_pool_core&) = delete;
  process_pool_core& operator=(const process_pool_core&) = delete;

  /// Finishes every task already submitted, then ends the workers.
  ~process_pool_core() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.signal();
    if (io_.joinable()) io_.join();
  }

  std::size_t size() const noexcept { return workers_; }

  void post(std::vector<std::unique_ptr<ipc::job>>& batch) {
    {
      std::lock_guard lock(mutex_);
      for (auto& j : batch) inbox_.push_back(std::move(j));
    }
    batch.clear();
    if (mail_.post()) wake_.signal();  // the I/O thread sleeps: wake it (awake, it sees the post)
  }

  /// Returns once the I/O thread has dropped the sink's jobs: it never calls the sink again.
  void cancel(ipc::job_sink* sink) {
    std::unique_lock lock(mutex_);
    cancels_.push_back(sink);
    const std::uint64_t ticket = ++cancel_requests_;
    wake_.signal();
    changed_.wait(lock, [&] { return cancel_done_ >= ticket; });
  }

  /// future::cancel of a submitted task: true when its job was not sent to a worker yet, and
  /// now never will be (the sink is not called). Waits for the I/O thread's answer, which comes
  /// at its next round: it is woken for it.
  bool withdraw(ipc::job_sink* sink) {
    std::unique_lock lock(mutex_);
    const auto posted = std::find_if(inbox_.begin(), inbox_.end(),
                                     [sink](const auto& j) { return j->sink == sink; });
    if (posted != inbox_.end()) {  // the I/O thread has not seen it yet
      inbox_.erase(posted);
      return true;
    }
    withdrawal_request request{sink};
    withdrawals_.push_back(&request);
    wake_.signal();
    changed_.wait(lock, [&] { return request.answered; });
    return request.taken;
  }

  /// Jobs whose outcome the I/O thread has delivered so far.
  std::uint64_t delivered() const noexcept { return delivered_.load(std::memory_order_acquire); }

  static bool withdraw_from(void* core, ipc::job_sink* sink) {
    return static_cast<process_pool_core*>(core)->withdraw(sink);
  }

 private:
  void loop() {
    std::optional<ipc::engine> engine;
    try {
      ipc::engine::config cfg{.workers = workers_,
                              .max_tasks_per_child = opts_.max_tasks_per_child,
                              .keep_workers = true};
      // Up to the hello a worker runs library code only (the initializer comes after it):
      // 5 s is ample, and a worker stuck before it is stopped instead of waited for.
      cfg.handshake_timeout = std::chrono::seconds(5);
      cfg.start_timeout = opts_.start_timeout;
      cfg.startup_hint = plan_.startup_hint;
      cfg.reaper = plan_.reaper;
      cfg.delivered = &delivered_;
      engine.emplace(std::move(cfg), plan_.start);
    } catch (...) {
      std::lock_guard lock(mutex_);
      startup_error_ = std::current_exception();
      ready_ = true;
      changed_.notify_all();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      ready_ = true;
    }
    changed_.notify_all();
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        mail_.seen = mail_.posted.load(std::memory_order_relaxed);  // the inbox has them all
        for (auto& j : inbox_) engine->post(std::move(j));
        inbox_.clear();
        if (!cancels_.empty()) {
          for (auto* sink : cancels_) engine->cancel(sink);
          cancels_.clear();
          cancel_done_ = cancel_requests_;
          changed_.notify_all();
        }
        if (!withdrawals_.empty()) {
          for (auto* request : withdrawals_) {
            request->taken = engine->withdraw(request->sink);
            request->answered = true;
          }
          withdrawals_.clear();
          changed_.notify_all();
        }
        if (stopping_ && engine->outstanding() == 0) break;
      }
      // The engine settles what it can place itself (a worker that cannot start, a result the
      // caller has no memory for); anything else that escapes fails every job, so no call
      // waits for an outcome that would never come, and the loop goes on.
      std::exception_ptr failure;
      try {
        if (engine->pump(-1, &wake_, &mail_)) wake_.drain();
      } catch (...) {
        failure = std::current_exception();
      }
      if (failure) engine->fail_everything([&failure] { return copy_of(failure); });
    }
  }

  std::size_t workers_;
  pool_options opts_;
  start_plan plan_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool ready_ = false;
  bool stopping_ = false;
  std::exception_ptr startup_error_;
  std::vector<std::unique_ptr<ipc::job>> inbox_;
  std::vector<ipc::job_sink*> cancels_;
  struct withdrawal_request {
    ipc::job_sink* sink;
    bool answered = false;
    bool taken = false;
  };
  std::vector<withdrawal_request*> withdrawals_;  // each on its caller's stack until answered
  std::uint64_t cancel_requests_ = 0;
  std::uint64_t cancel_done_ = 0;
  os::wakeup wake_;
  ipc::mailbox_bell mail_;
  std::atomic<std::uint64_t> delivered_{0};
  std::thread io_;
};

class pool_runner final : public runner {
 public:
  explicit pool_runner(process_pool_core& core, std::shared_ptr<process_pool_core> owned = nullptr)
      : owned_(std::move(owned)), core_(core) {}
  void post(std::vector<std::unique_ptr<ipc::job>>& batch) override { core_.post(batch); }
  void cancel(ipc::job_sink* sink) override { core_.cancel(sink); }
  /// Every other wait of a thread first watches for news a few microseconds without its lock
  /// (a short job's result comes sooner than a sleeping thread wakes), and returns for the
  /// caller to look again; the next one sleeps (under the lock the caller checked with, so no
  /// wake-up is lost).
  void wait(std::unique_lock<std::mutex>& lock, std::condition_variable& changed) override {
    thread_local bool spun = false;
    if (spun) {
      spun = false;
      changed.wait(lock);
      return;
    }
    spun = true;
    const std::uint64_t seen = core_.delivered();
    lock.unlock();
    (void)spin_until([&] { return core_.delivered() != seen; }, 30'000);
    lock.lock();
  }
  std::size_t workers() const override { return core_.size(); }
  withdrawal withdrawer() override { return {&process_pool_core::withdraw_from, &core_}; }

 private:
  std::shared_ptr<process_pool_core> owned_;  // a per-call pool (processes<start::spawn>)
  process_pool_core& core_;
};

/// A C string argument of submit crosses as its characters, and reaches f as whichever of
/// const char*, std::string or std::string_view it takes (a pointer alone could not cross).
struct c_string_arg {
  std::string text;
  operator const char*() const noexcept { return text.c_str(); }  // NOLINT
  operator const std::string&() const noexcept { return text; }   // NOLINT
  operator std::string_view() const noexcept { return text; }     // NOLINT
};

template <class T>
using shipped_arg_t = std::conditional_t<std::is_same_v<std::decay_t<T>, const char*> ||
                                             std::is_same_v<std::decay_t<T>, char*>,
                                         c_string_arg, std::decay_t<T>>;

/// A submitted call's future: completed by the pool's I/O thread, or taken back by cancel()
/// before its job was sent (the pool outlives every future not complete: it finishes their jobs
/// before it ends).
template <class R>
struct process_future final : future_state<R>, ipc::job_sink {
  explicit process_future(withdrawal w)
      : future_state<R>(&never_run, &destroy, nullptr, any_tag, w.take ? &cancel : nullptr),
        withdraw_(w) {}

  static void never_run(task*) noexcept {}
  static void destroy(future_state<R>* base) noexcept { delete static_cast<process_future*>(base); }

  static bool cancel(future_state<R>* base) {
    auto* self = static_cast<process_future*>(base);
    if (!self->withdraw_.take(self->withdraw_.owner, self)) return false;
    // The engine will never call this sink: the future alone holds the state from now on.
    (void)self->done_.set();
    return true;
  }

  void results(ipc::job&, decoder& in, std::uint64_t k, std::uint64_t) override {
    if (k == 1) {
      if constexpr (std::is_void_v<R>)
        (void)in.read<no_result>();
      else
        this->value_.emplace(in.read<R>());
    }
  }
  void failed(ipc::job&, std::exception_ptr error) override { this->error_ = std::move(error); }
  void done(ipc::job&) override { this->complete(); }

  withdrawal withdraw_;
};

/// The item type a pool's worker decodes, and what f returns for it.
template <class Range>
using pool_item_t = std::remove_cvref_t<std::ranges::range_value_t<Range>>;

template <class Fn, class V, bool Apply>
struct pool_call {
  static decltype(auto) call(Fn& fn, V& v) {
    if constexpr (Apply)
      return std::apply(fn, v);
    else
      return std::invoke(fn, v);
  }
  using result = std::remove_cvref_t<decltype(call(std::declval<Fn&>(), std::declval<V&>()))>;
};

template <class Fn, class V, bool Apply>
body_prefix shipped_prefix(const Fn& fn) {
  static_cast<void>(sizeof(ipc::cannot_ship_callable<Fn>));
  body_prefix prefix;
  encoder out(prefix);
  ipc::encode_location(out, ipc::trampoline_location<&ipc::run_items<Fn, V, Apply>>());
  ipc::encode_callable(out, fn);
  return prefix;
}

/// map / starmap on workers that run shipped tasks (a process pool's, or MPI ranks): each job
/// carries the trampoline, f and its items.
template <bool Apply, class F, class Range>
auto pool_map(runner& run, F& f, Range& items, const options& opts) {
  using Fn = std::decay_t<F>;
  using V = pool_item_t<Range>;
  using R = unit_if_void_t<typename pool_call<Fn, V, Apply>::result>;
  require_transferable<V>();
  require_transferable<R>();
  indexed_input<Range> input(items);
  const std::size_t n = input.size();
  if (n == 0) {
    if (opts.progress) opts.progress(0, 0);
    return std::vector<R>{};
  }
  const body_prefix prefix = shipped_prefix<Fn, V, Apply>(f);
  process_map_call<R> call(run, n, opts, learned_cost_for<Fn, V>());
  return call.run(prefix, [&](encoder& body, std::size_t first, std::size_t count) {
    if constexpr (crosses_as_bytes<V> && std::ranges::contiguous_range<Range> &&
                  std::is_same_v<std::ranges::range_value_t<Range>, V>) {
      // Items that are their bytes, side by side in memory: one copy of the block.
      body.write_bytes(std::ranges::data(items) + first, count * sizeof(V));
    } else {
      for (std::size_t i = first; i < first + count; ++i) {
        const V& item = input[i];
        body.write(item);
      }
    }
  });
}

/// imap / imap_unordered on workers that run shipped tasks; the view owns `run`.
template <bool Ordered, bool Apply, class Runner, class F, class Range>
auto pool_imap(std::unique_ptr<Runner> run, F&& f, Range&& items, const options& opts) {
  using View = held_range<Range>;
  using Fn = std::decay_t<F>;
  using V = pool_item_t<View>;
  using R = unit_if_void_t<typename pool_call<Fn, V, Apply>::result>;
  using state = process_imap_state<R, View, Ordered>;
  require_transferable<V>();
  require_transferable<R>();
  runner& r = *run;
  std::unique_ptr<void, void (*)(void*)> keep(run.release(),
                                              [](void* p) { delete static_cast<Runner*>(p); });
  typename state::filler fill = &ship_items<View, V>;
  return imap_view<state>(std::make_unique<state>(r, View(std::forward<Range>(items)), opts,
                                                  shipped_prefix<Fn, V, Apply>(f), std::move(fill),
                                                  std::move(keep), learned_cost_for<Fn, V>()));
}

/// submit on workers that run shipped tasks: one job of one call, its outcome in a future.
template <class F, class... Args>
auto pool_submit(runner& run, F&& f, Args&&... args) {
  using Fn = std::decay_t<F>;
  using Tuple = std::tuple<shipped_arg_t<Args>...>;
  using R = submit_result_t<F, Args...>;
  require_transferable<unit_if_void_t<R>>();
  require_transferable<Tuple>();
  auto j = std::make_unique<ipc::job>();
  j->first = remote_error::no_index;
  j->count = 1;
  {
    encoder out(j->payload);
    ipc::write_task_header(out, j->first, 1, 0);
    const body_prefix prefix = shipped_prefix<Fn, Tuple, true>(f);
    out.write_bytes(prefix.data(), prefix.size());
    out.write(Tuple(std::forward<Args>(args)...));
  }
  auto* state = new process_future<R>(run.withdrawer());
  j->sink = state;
  std::vector<std::unique_ptr<ipc::job>> one;
  one.push_back(std::move(j));
  run.post(one);
  return future_access::make<R>(state);
}

/// starmap reaches a backend as apply_each<G&>; on a pool, G is what crosses.
template <class F>
struct unwrap_apply {
  static constexpr bool apply = false;
  template <class G>  // F, or const F
  static G& get(G& f) {
    return f;
  }
};
template <class G>
struct unwrap_apply<apply_each<G&>> {
  static constexpr bool apply = true;
  static G& get(apply_each<G&>& each) { return each.f; }
};

/// processes<start::spawn> and processes<start::forkserver>: a pool of workers for the call;
/// f and the items cross, as on a process_pool.
template <class Start>
requires(std::is_same_v<Start, start::spawn> ||
         std::is_same_v<Start, start::forkserver>) struct backend<processes<Start>> {
  template <class F, class Range>
  static auto map(const processes<Start>& p, F& f, Range& items, const options& opts) {
    using unwrap = unwrap_apply<std::remove_cvref_t<F>>;
    process_pool_core core(pool_options{.workers = p.workers}, start_method<Start>::plan(nullptr));
    pool_runner run(core);
    return pool_map<unwrap::apply>(run, unwrap::get(f), items, opts);
  }

  template <bool Ordered, class F, class Range>
  static auto imap(const processes<Start>& p, F&& f, Range&& items, const options& opts) {
    // The view owns the pool: it ends after the view's last job.
    auto core = std::make_shared<process_pool_core>(pool_options{.workers = p.workers},
                                                    start_method<Start>::plan(nullptr));
    process_pool_core& ref = *core;
    return pool_imap<Ordered, false>(std::make_unique<pool_runner>(ref, std::move(core)),
                                     std::forward<F>(f), std::forward<Range>(items), opts);
  }
};

}  // namespace detail

template <>
struct codec<detail::c_string_arg> {
  static void encode(encoder& out, const detail::c_string_arg& arg) { out.write(arg.text); }
  static detail::c_string_arg decode(decoder& in) { return {in.read<std::string>()}; }
};

/// Worker processes for reuse across calls (Python's Pool / ProcessPoolExecutor). Workers start
/// with the pool and stay until it is destroyed; a worker that dies is replaced, and only the
/// task it was running fails (parallel::worker_died).
///
///     parallel::process_pool<> pool{{.workers = 4}};
///     std::vector<int> squares = pool.map(square, xs);
///     parallel::future<double> r = pool.submit(slow_pow, 3, 2);
///
/// f crosses to the workers: a function, a lambda without captures, or a lambda capturing
/// numbers by value (its bytes are copied). Items, arguments and results cross through
/// parallel::codec. A pool built before a lambda was written still runs it: the lambda's code
/// is in the executable the workers run.
template <class Start = start::platform_default>
class process_pool {
  static_assert(std::is_same_v<Start, start::fork> || std::is_same_v<Start, start::spawn> ||
                    std::is_same_v<Start, start::forkserver>,
                "parallel::process_pool: Start must be start::fork, start::spawn or "
                "start::forkserver");
  static_assert(detail::start_available<Start>,
                "parallel::process_pool<Start>: this platform has no fork(), so start::fork and "
                "start::forkserver are POSIX only; on Windows use parallel::process_pool<> (which "
                "is start::spawn there) and make parallel::spawn_main(argc, argv) the first "
                "statement of main");

 public:
  using options_type = pool_options;

  explicit process_pool(const pool_options& opts = {})
      : core_(std::make_unique<detail::process_pool_core>(
            opts, detail::start_method<Start>::plan(opts.initializer))) {}

  process_pool(process_pool&&) noexcept = default;
  process_pool& operator=(process_pool&&) noexcept = default;
  /// Finishes the tasks already submitted, then ends the workers.
  ~process_pool() = default;

  /// Number of worker processes.
  std::size_t size() const noexcept { return core_->size(); }

  /// f returning void: map and starmap return void, imap and imap_unordered a range that yields
  /// nothing and runs every item when the loop over it starts.
  template <class F, std::ranges::input_range Range>
  auto map(F&& f, Range&& items, const options& opts = {}) {
    detail::pool_runner run(*core_);
    return detail::map_outcome(detail::pool_map<false>(run, f, items, opts));
  }

  template <class F, std::ranges::input_range Range>
  auto starmap(F&& f, Range&& items, const options& opts = {}) {
    detail::pool_runner run(*core_);
    return detail::map_outcome(detail::pool_map<true>(run, f, items, opts));
  }

  template <class F, std::ranges::input_range Range>
  auto imap(F&& f, Range&& items, const options& opts = {}) {
    return detail::imap_outcome(
        detail::pool_imap<true, false>(std::make_unique<detail::pool_runner>(*core_),
                                       std::forward<F>(f), std::forward<Range>(items), opts));
  }

  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F&& f, Range&& items, const options& opts = {}) {
    return detail::imap_outcome(
        detail::pool_imap<false, false>(std::make_unique<detail::pool_runner>(*core_),
                                        std::forward<F>(f), std::forward<Range>(items), opts));
  }

  /// Runs f(args...) in a worker (Python's apply_async / executor.submit). If that worker dies,
  /// only this future fails (parallel::worker_died); the others complete. A void f gives a
  /// future<void>. future::cancel() takes the task back while it is still in the pool's queue
  /// (the pool sends a few tasks ahead to each worker: those run).
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    detail::pool_runner run(*core_);
    return detail::pool_submit(run, std::forward<F>(f), std::forward<Args>(args)...);
  }

 private:
  std::unique_ptr<detail::process_pool_core> core_;
};

/// The first statement of main in a program that uses start::spawn (the twin of Python's
/// `if __name__ == '__main__':` guard and freeze_support()). A spawned worker runs this
/// executable again: in it, spawn_main turns the process into a worker and never returns; in a
/// normal run it returns at once.
///
///     int main(int argc, char** argv) {
///       parallel::spawn_main(argc, argv);
///       ...
///     }
inline void spawn_main(int argc, char** argv) {
  static_cast<void>(argc);
  static_cast<void>(argv);
  if (const char* marker = detail::os::worker_marker_value()) detail::run_spawned_worker(marker);
}

}  // namespace parallel
