// process_pool's machinery, and processes<start::spawn> and processes<start::forkserver>, which
// run a call on a pool of its own: the pool's core (its engine and the I/O thread that drives it,
// or a caller that drives it while jobs are short), the runner its calls post through, a
// submitted task's future, and the verbs (map, imap, submit) over a pool.
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
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "../../errors.hpp"
#include "../../policy.hpp"
#include "../futures/completion.hpp"
#include "../futures/state.hpp"
#include "../ipc/engine.hpp"
#include "../ipc/hooks.hpp"
#include "../ipc/job_mailbox.hpp"
#include "../ipc/task.hpp"
#include "../no_result.hpp"
#include "../process_platform.hpp"
#include "../scheduler/default_pools.hpp"
#include "../start/plan.hpp"
#include "../start/roles.hpp"
#include "../start/spawn.hpp"
#include "../workers.hpp"
#include "backends.hpp"
#include "process_verbs.hpp"
#include "void_results.hpp"

namespace parallel::detail {

/// parallel::pool_options' defaults.
inline constexpr std::chrono::seconds default_start_timeout{60};
inline constexpr std::chrono::seconds default_on_exit_timeout{30};

/// What a process pool is made with: parallel::pool_options, its hooks as the bytes that cross
/// (ipc::encode_hook; empty: no call).
struct pool_config {
  int workers = 0;
  std::size_t max_tasks_per_child = 0;
  std::vector<std::byte> initializer{};
  std::chrono::milliseconds start_timeout = default_start_timeout;
  std::vector<std::byte> on_exit{};
  std::chrono::milliseconds on_exit_timeout = default_on_exit_timeout;
};

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

class process_pool_core;

/// Who drives a pool's engine: its loop, or a caller that waits for short jobs
/// (process_pool_core::drive). Shared with the pool's futures, which may outlive the pool.
struct engine_gate {
  std::mutex mutex;                     // held by whoever drives the engine
  process_pool_core* core = nullptr;    // set while the loop runs (under mutex)
  std::atomic<bool> loop_waits{false};  // the loop wants the engine: a driver lets go
  ipc::mailbox_bell mail;               // posts to the engine; drivers that want it
};

/// The pool's engine and the thread that drives it. Workers are started by that thread, which
/// lives as long as the pool: Linux ties PR_SET_PDEATHSIG to the thread that forked.
class process_pool_core {
 public:
  process_pool_core(pool_config config, start_plan plan)
      : workers_(resolve_workers(config.workers)),
        config_(std::move(config)),
        plan_(std::move(plan)) {
    refuse_in_spawned_child();
    try {
      io_ = std::thread([this] { loop(); });
    } catch (const std::system_error& e) {
      throw std::system_error(
          e.code(),
          "parallel::process_pool: the system refused the pool's I/O thread (the user's "
          "process/thread limit, ulimit -u / RLIMIT_NPROC, a cgroup's pids.max or "
          "kernel.threads-max is reached, or no memory is left for its stack); no worker was "
          "started. Raise the limit, or end other pools first");
    }
    std::unique_lock lock(mailbox_.mutex());
    mailbox_.changed().wait(lock, [this] { return ready_; });
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
      std::lock_guard lock(mailbox_.mutex());
      stopping_ = true;
    }
    wake_.signal();
    if (io_.joinable()) io_.join();
  }

  std::size_t size() const noexcept { return workers_; }
  /// Payload buffers of finished jobs, for the next ones (ipc::payload_cache).
  ipc::payload_cache& spares() noexcept { return spares_; }

  /// Jobs go to the inbox; when no one drives the engine, the caller sends them itself (no hop
  /// through the loop), else the driver, or the loop woken for them, takes them.
  void post(std::vector<std::unique_ptr<ipc::job>>& batch) {
    mailbox_.post(batch);
    if (!driving_here() && !gate_->loop_waits.load(std::memory_order_relaxed) &&
        gate_->mutex.try_lock()) {
      std::unique_lock drive(gate_->mutex, std::adopt_lock);
      if (engine_ != nullptr) {
        send_now();
        return;
      }
    }
    if (gate_->mail.post()) wake_.signal();  // the loop sleeps: wake it (awake, it sees the post)
  }

  /// A caller that waits until `done()` drives the engine itself while jobs are short: it sends
  /// tasks and reads results from the rings with no hop through the loop, which sleeps
  /// meanwhile. True once done() holds; false when it stopped first (no news for a while, long
  /// jobs, or the loop needs the engine for what only it may do): the caller then sleeps as it
  /// would without driving, and the loop delivers.
  /// `until_ns` (os::monotonic_ns; 0: none) bounds the driving, as news would not.
  template <class Done>
  static bool drive(engine_gate& gate, Done&& done, std::uint64_t until_ns = 0) {
    if (done()) return true;
    if (driving_here()) return false;  // a sink called back into a pool: one engine at a time
    gate.mail.drivers.fetch_add(1, std::memory_order_seq_cst);
    std::uint64_t news_ns = os::monotonic_ns();
    bool finished = false;
    for (unsigned spins = 0;; ++spins) {
      if (done()) {
        finished = true;
        break;
      }
      if (!gate.loop_waits.load(std::memory_order_relaxed) && gate.mutex.try_lock()) {
        std::unique_lock lock(gate.mutex, std::adopt_lock);
        if (gate.core == nullptr) break;
        const drove outcome = gate.core->drive_held(done, news_ns, until_ns);
        if (outcome == drove::done) {
          finished = true;
          break;
        }
        if (outcome == drove::stop) break;
        // The loop asked for the engine: it has it as soon as this lock goes; then again.
      }
      if (enough(news_ns, until_ns)) break;
      cpu_relax();
      if (spins % 64 == 63) std::this_thread::yield();
    }
    gate.mail.drivers.fetch_sub(1, std::memory_order_seq_cst);
    return finished;
  }

  engine_gate& gate() noexcept { return *gate_; }
  std::shared_ptr<engine_gate> shared_gate() const noexcept { return gate_; }

  /// Returns once the I/O thread has dropped the sink's jobs: it never calls the sink again.
  void cancel(ipc::job_sink* sink) {
    mailbox_.cancel(sink, [this] { wake_.signal(); });
  }

  /// future::cancel of a submitted task: before_start when its job was not sent to a worker
  /// yet (or its worker had not started it), killed when `kill` asked for the worker running it
  /// to be killed and it was; either way the sink is never called. Waits for the I/O thread's
  /// answer, which comes at its next round: it is woken for it.
  cancel_outcome withdraw(ipc::job_sink* sink, bool kill) {
    return mailbox_.withdraw(sink, kill, [this] { wake_.signal(); });
  }

  /// Jobs whose outcome the I/O thread has delivered so far.
  std::uint64_t delivered() const noexcept { return delivered_.load(std::memory_order_acquire); }

  static cancel_outcome withdraw_from(void* core, ipc::job_sink* sink, bool kill) {
    return static_cast<process_pool_core*>(core)->withdraw(sink, kill);
  }

 private:
  /// A driving caller gives the engine up after this long without a result.
  static constexpr std::uint64_t drive_quiet_ns = 50'000;

  enum class drove { done, loop_waits, stop };

  /// A driver stops after drive_quiet_ns without a result, or at its deadline.
  static bool enough(std::uint64_t news_ns, std::uint64_t until_ns) noexcept {
    const std::uint64_t now = os::monotonic_ns();
    return now - news_ns > drive_quiet_ns || (until_ns != 0 && now >= until_ns);
  }

  static bool& driving_here() noexcept {
    thread_local bool driving = false;
    return driving;
  }

  /// Takes what callers left for the loop: jobs, cancellations, withdrawals. Under the gate's
  /// mutex (whoever drives). True when the pool is ending and nothing is left to do.
  bool intake(ipc::engine& engine) {
    std::lock_guard lock(mailbox_.mutex());
    ipc::mailbox_bell& mail = gate_->mail;
    mail.seen = mail.posted.load(std::memory_order_relaxed);  // the mailbox has them all
    mailbox_.deliver(engine);
    return stopping_ && engine.outstanding() == 0;
  }

  /// post() with the engine in hand: the jobs go out now. Nothing else: the caller may hold its
  /// call's lock, which a sink takes (results are for the loop or a driver).
  void send_now() {
    ipc::engine& e = *engine_;
    driving_here() = true;
    try {
      (void)intake(e);
      e.send_round();
    } catch (...) {
      e.abandon_driving();
    }
    driving_here() = false;
    if (e.needs_loop()) wake_.signal();
  }

  /// What escapes a driver's round fails every job, as in the loop, and the loop takes over.
  void failed_driving(ipc::engine& e, const std::exception_ptr& failure) noexcept {
    gate_->mail.bell.sleeping();
    e.abandon_driving();
    try {
      e.fail_everything([&failure] { return copy_of(failure); });
    } catch (...) {
    }
    (void)e.needs_loop();
    wake_.signal();
  }

  /// A driver's rounds, with the engine in hand: until done(), the loop's request, or no result
  /// for drive_quiet_ns (or jobs not worth it).
  template <class Done>
  drove drive_held(Done& done, std::uint64_t& news_ns, std::uint64_t until_ns) {
    ipc::engine& e = *engine_;
    driving_here() = true;
    drove outcome = drove::stop;
    try {
      (void)intake(e);
      if (!e.worth_driving()) {  // long jobs: their results are waited for asleep
        e.send_round();          // (the posts it took go out, as post() would send them)
        driving_here() = false;
        if (e.needs_loop()) wake_.signal();
        return done() ? drove::done : drove::stop;
      }
      gate_->mail.bell.awake();
      e.begin_driving();
      for (unsigned spins = 0;; ++spins) {
        if (gate_->mail.pending()) (void)intake(e);
        if (e.drive_round() > 0) news_ns = os::monotonic_ns();
        if (done()) {
          outcome = drove::done;
          break;
        }
        if (gate_->loop_waits.load(std::memory_order_relaxed)) {
          outcome = drove::loop_waits;
          break;
        }
        if (enough(news_ns, until_ns) || !e.worth_driving()) break;
        cpu_relax();
        if (spins % 64 == 63) std::this_thread::yield();  // the workers may need this core
      }
      let_go(e);
    } catch (...) {
      failed_driving(e, std::current_exception());
      outcome = drove::stop;
    }
    driving_here() = false;
    return outcome;
  }

  /// The driver's last steps: callers post to the loop again, workers ring the socket again,
  /// and whatever came in before that is taken now; the loop is woken when it has work only it
  /// may do.
  void let_go(ipc::engine& e) {
    gate_->mail.bell.sleeping();
    if (gate_->mail.pending()) {
      (void)intake(e);
      (void)e.drive_round();
    }
    e.end_driving();
    if (e.needs_loop()) wake_.signal();
  }

  void loop() {
    std::optional<ipc::engine> engine;
    try {
      ipc::engine::config cfg{.workers = workers_,
                              .max_tasks_per_child = config_.max_tasks_per_child,
                              .keep_workers = true};
      // Up to the hello a worker runs library code only (the initializer comes after it):
      // 5 s is ample, and a worker stuck before it is stopped instead of waited for.
      cfg.handshake_timeout = std::chrono::seconds(5);
      cfg.start_timeout = config_.start_timeout;
      cfg.startup_hint = plan_.startup_hint;
      cfg.reaper = plan_.reaper;
      cfg.delivered = &delivered_;
      cfg.spares = &spares_;
      cfg.hooks = ipc::pack_hooks(config_.initializer, config_.on_exit);
      if (!config_.on_exit.empty()) cfg.end_grace = config_.on_exit_timeout;
      engine.emplace(std::move(cfg), plan_.start);
    } catch (...) {
      std::lock_guard lock(mailbox_.mutex());
      startup_error_ = std::current_exception();
      ready_ = true;
      mailbox_.changed().notify_all();
      return;
    }
    driving_here() = true;  // a sink that posts from this thread must not take the gate
    std::unique_lock drive(gate_->mutex);
    engine_ = &*engine;
    gate_->core = this;
    {
      std::lock_guard lock(mailbox_.mutex());
      ready_ = true;
    }
    mailbox_.changed().notify_all();
    // The loop holds the engine except while it sleeps: then a waiting caller may drive it.
    while (!intake(*engine)) {
      // The engine settles what it can place itself (a worker that cannot start, a result the
      // caller has no memory for); anything else that escapes fails every job, so no call
      // waits for an outcome that would never come, and the loop goes on.
      std::exception_ptr failure;
      try {
        const int timeout = engine->prepare_wait(-1, &wake_, &gate_->mail);
        drive.unlock();
        const int ready = engine->wait_now(timeout);
        gate_->loop_waits.store(true, std::memory_order_relaxed);
        drive.lock();
        gate_->loop_waits.store(false, std::memory_order_relaxed);
        if (engine->finish_wait(ready, &gate_->mail)) wake_.drain();
      } catch (...) {
        failure = std::current_exception();
        if (!drive.owns_lock()) {
          drive.lock();
          gate_->loop_waits.store(false, std::memory_order_relaxed);
        }
      }
      if (failure) engine->fail_everything([&failure] { return copy_of(failure); });
    }
    gate_->core = nullptr;
    engine_ = nullptr;
  }

  std::size_t workers_;
  pool_config config_;
  start_plan plan_;
  ipc::job_mailbox mailbox_;  // its mutex and condition guard ready_, stopping_ too
  bool ready_ = false;
  bool stopping_ = false;
  std::exception_ptr startup_error_;
  os::wakeup wake_;
  std::shared_ptr<engine_gate> gate_ = std::make_shared<engine_gate>();
  ipc::engine* engine_ = nullptr;  // the loop's, while it runs (under the gate's mutex)
  std::atomic<std::uint64_t> delivered_{0};
  ipc::payload_cache spares_;  // outlives the engine, which gives to it
  std::thread io_;
};

class pool_runner final : public runner {
 public:
  explicit pool_runner(process_pool_core& core, std::shared_ptr<process_pool_core> owned = nullptr)
      : owned_(std::move(owned)), core_(core) {}
  void post(std::vector<std::unique_ptr<ipc::job>>& batch) override { core_.post(batch); }
  void cancel(ipc::job_sink* sink) override { core_.cancel(sink); }
  std::vector<std::byte> buffer() override { return core_.spares().take(); }
  bool lends() const override { return true; }
  /// While jobs are short, a waiting caller drives the pool's engine itself
  /// (process_pool_core::drive) and returns at the first job delivered; the wait after one
  /// that saw none sleeps (under the lock the caller checked with, so no wake-up is lost).
  void wait(std::unique_lock<std::mutex>& lock, std::condition_variable& changed) override {
    thread_local bool quiet = false;
    if (quiet) {
      quiet = false;
      changed.wait(lock);
      return;
    }
    const std::uint64_t seen = core_.delivered();
    lock.unlock();
    bool news = false;
    try {
      news = process_pool_core::drive(core_.gate(), [&] { return core_.delivered() != seen; });
    } catch (...) {
      lock.lock();
      throw;
    }
    quiet = !news;
    lock.lock();
  }
  std::size_t workers() const override { return core_.size(); }
  withdrawal withdrawer() override { return {&process_pool_core::withdraw_from, &core_}; }
  future_helper helper() override {
    return {[](void* gate, const latch& done, std::uint64_t within_ns) {
              return process_pool_core::drive(
                  *static_cast<engine_gate*>(gate), [&done] { return done.is_set(); },
                  within_ns == 0 ? 0 : os::monotonic_ns() + within_ns);
            },
            core_.shared_gate()};
  }

 private:
  std::shared_ptr<process_pool_core> owned_;  // a per-call pool (processes<start::spawn>)
  process_pool_core& core_;
};

/// A submitted call's future: completed by the pool's I/O thread, or taken back by cancel()
/// before its job was sent (the pool outlives every future not complete: it finishes their jobs
/// before it ends).
template <class R>
struct process_future final : future_state<R>, ipc::job_sink {
  process_future(withdrawal w, future_helper h)
      : future_state<R>(&never_run, &destroy, nullptr, any_tag, w.take ? &cancel : nullptr),
        withdraw_(w),
        helper_(std::move(h)) {
    if (helper_.help != nullptr) this->help_ = &help;
  }

  static void help(future_state<R>* base, std::uint64_t within_ns) {
    auto* self = static_cast<process_future*>(base);
    (void)self->helper_.help(self->helper_.gate.get(), self->done_, within_ns);
  }

  static void never_run(task*) noexcept {}
  static void destroy(future_state<R>* base) noexcept { delete static_cast<process_future*>(base); }

  static cancel_outcome cancel(future_state<R>* base, if_running running) {
    auto* self = static_cast<process_future*>(base);
    const cancel_outcome outcome =
        self->withdraw_.take(self->withdraw_.owner, self, running == if_running::kill);
    if (outcome == cancel_outcome::refused) return outcome;
    // The engine will never call this sink: the future alone holds the state from now on.
    (void)self->done_.set();
    return outcome;
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
  future_helper helper_;
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
  process_map_call<R> call(run, n, opts, learned_cost_for<V>(f));
  const bool lend = run.lends();
  return call.run(prefix, [&](ipc::job& j, encoder& body, std::size_t first, std::size_t count) {
    if constexpr (crosses_as_bytes<V> && std::ranges::contiguous_range<Range> &&
                  std::is_same_v<std::ranges::range_value_t<Range>, V>) {
      // Items that are their bytes, side by side in memory: the engine copies them straight
      // into the frame it sends, or they are copied here as one block.
      const auto* block = reinterpret_cast<const std::byte*>(std::ranges::data(items) + first);
      if (lend)
        j.borrowed = {block, count * sizeof(V)};
      else
        body.write_bytes(block, count * sizeof(V));
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
  const cost_memory memory = learned_cost_for<V>(f);
  return imap_view<state>(std::make_unique<state>(r, View(std::forward<Range>(items)), opts,
                                                  shipped_prefix<Fn, V, Apply>(f), std::move(fill),
                                                  std::move(keep), memory));
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
  auto* state = new process_future<R>(run.withdrawer(), run.helper());
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
    process_pool_core core(pool_config{.workers = p.workers}, start_method<Start>::plan());
    pool_runner run(core);
    return pool_map<unwrap::apply>(run, unwrap::get(f), items, opts);
  }

  template <bool Ordered, class F, class Range>
  static auto imap(const processes<Start>& p, F&& f, Range&& items, const options& opts) {
    // The view owns the pool: it ends after the view's last job.
    auto core = std::make_shared<process_pool_core>(pool_config{.workers = p.workers},
                                                    start_method<Start>::plan());
    process_pool_core& ref = *core;
    return pool_imap<Ordered, false>(std::make_unique<pool_runner>(ref, std::move(core)),
                                     std::forward<F>(f), std::forward<Range>(items), opts);
  }
};

}  // namespace parallel::detail
