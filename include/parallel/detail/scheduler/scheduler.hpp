// The work-stealing scheduler behind thread_pool: per-worker Chase-Lev deques, an injection queue
// for outside threads, sleep/wake with C++20 atomic wait, and help-while-waiting restricted to
// the waiter's own parallel call. It knows tasks, not map or imap. Design notes: README.md.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "../../errors.hpp"
#include "../exception_names.hpp"
#include "../platform.hpp"
#include "fork_guard.hpp"
#include "injection_queue.hpp"
#include "parker.hpp"
#include "task.hpp"
#include "work_deque.hpp"

namespace parallel::detail {

/// What a scheduler does when the system refuses one of its threads (RLIMIT_NPROC, cgroup
/// pids.max, no memory for a stack).
enum class on_thread_refused {
  fail,     // stop the threads already started and throw std::system_error
  degrade,  // keep the threads already started (possibly none: size() == 0, callers run all)
};

/// Code a pool runs on each of its worker threads: before the thread takes its first task, and
/// after its last one (thread_pool_options' initializer and on_exit).
struct worker_hooks {
  std::function<void()> on_start{};
  std::function<void()> on_exit{};
};

class scheduler {
  struct worker;

 public:
  /// `who` names the pool in the error message ("parallel::threads{.workers = 8}").
  explicit scheduler(std::size_t threads, on_thread_refused refused = on_thread_refused::fail,
                     std::string_view who = "parallel::thread_pool", worker_hooks hooks = {})
      : generation_(fork_guard::generation().load()), hooks_(std::move(hooks)) {
    fork_guard::install();
    threads = std::max<std::size_t>(threads, 1);
    workers_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i)
      workers_.push_back(std::make_unique<worker>(*this, i));
    // Workers wait at the gate until the set of workers is final: a refused thread shrinks
    // workers_, which the started ones read (find_task, wake_one) once they run.
    std::size_t started = 0;
    try {
      for (; started < threads; ++started) {
        worker* w = workers_[started].get();
        w->thread = std::thread([this, w] {
          gate_.wait(0, std::memory_order_acquire);
          // A constructor that gave up opens the gate for its workers to end: no hook runs.
          if (gave_up_ || !start_hook(*w)) return;
          run_worker(*w);
          // An exception from it ends the program, as one from a destructor would.
          if (hooks_.on_exit) hooks_.on_exit();
        });
      }
    } catch (const std::system_error& e) {
      if (refused == on_thread_refused::fail) {
        stop_started();
        throw std::system_error(e.code(), refused_message(who, started, threads));
      }
      workers_.resize(started);
    } catch (...) {  // no memory for a thread's state: not the system's refusal, not ours to hide
      stop_started();
      throw;
    }
    // All workers start idle, hence hungry: the first call splits its work right away.
    hungry_.store(static_cast<std::uint32_t>(workers_.size()), std::memory_order_relaxed);
    open_gate();
    if (hooks_.on_start) await_start_hooks(who);
  }

  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  /// Runs every task already queued, then joins the workers.
  ~scheduler() { stop_running(); }

  /// Number of worker threads; 0 only for a degraded pool that got none (callers run all).
  std::size_t size() const noexcept { return workers_.size(); }

  /// True when every worker has started and now sleeps (idle, or parked in a waiting call).
  bool asleep() const noexcept {
    return sleepers_.load(std::memory_order_seq_cst) == workers_.size();
  }

  /// False in a child forked after this scheduler was built: its threads do not exist there.
  bool usable() const noexcept {
    return generation_ == fork_guard::generation().load(std::memory_order_relaxed);
  }

  isolation_tag new_tag() noexcept {
    static std::atomic<isolation_tag> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }

  /// True when the calling thread is one of this scheduler's workers.
  bool on_worker() const noexcept { return local_worker() != nullptr; }

  /// Whether the calling thread may run this pool's items itself (a map's inline start): not
  /// when the pool has hooks (its threads are prepared for the items, or account for them at
  /// the end) and this thread is not one of them.
  bool may_run_here() const noexcept {
    return (!hooks_.on_start && !hooks_.on_exit) || on_worker();
  }

  /// The tag of the task the calling worker runs, or a fresh tag for an outside thread.
  isolation_tag current_tag() noexcept {
    worker* w = local_worker();
    return w != nullptr && w->current_tag != any_tag ? w->current_tag : new_tag();
  }

  /// True when some worker is looking for work: the moment to split a range further.
  bool hungry() const noexcept { return hungry_.load(std::memory_order_relaxed) != 0; }

  /// Queues t: on the calling worker's own deque, or on the injection queue from outside.
  void spawn(task* t) {
    const isolation_tag tag = t->tag_;  // t may run (and be gone) as soon as it is queued
    if (worker* w = local_worker()) {
      w->deque.push(t);
    } else {
      injected_.push(t);
    }
    wake_one(tag);
  }

  /// Calling worker only: when t is the newest task on its own deque (it spawned t, and no
  /// thief has taken it), takes t off and calls run() here, under t's tag as execute() would;
  /// false, and nothing done, otherwise (another thread, or t taken or not the newest).
  template <class Run>
  bool run_if_newest(const task* t, Run&& run) {
    worker* w = local_worker();
    if (w == nullptr || !w->deque.pop_if(t)) return false;
    under_tag(*w, t->tag_, run);
    return true;
  }

  /// Runs left() here and right() wherever a hungry worker takes it; returns when both are
  /// done. Calling worker only; neither part may throw (the algorithms catch inside).
  template <class Left, class Right>
  void join(Left&& left, Right&& right, isolation_tag tag) {
    struct right_task : task {
      right_task(Right& fn, isolation_tag t) : task(&run, t), fn_(&fn) {}
      static void run(task* base) noexcept {
        auto* self = static_cast<right_task*>(base);
        (*self->fn_)();
        self->done_.set();
      }
      Right* fn_;
      latch done_;
    };
    right_task other(right, tag);
    spawn(&other);
    left();
    // Usually `other` is still on top of our own deque and the wait runs it inline.
    wait(other.done_, tag);
  }

  /// The fork-join of parallel::join: runs left() and right() and returns when both are done,
  /// rethrowing the first exception (left's before right's) after both ended. right() is only
  /// latent at first: a record on this worker's own stack, which costs no atomic operation.
  /// When a worker is hungry, the next join on this worker hands the oldest latent right() to
  /// the pool (the largest share of a recursion), as heartbeat schedulers do; a right() nobody
  /// took runs here after left(). Calling worker only.
  template <class Left, class Right>
  void join_latent(Left& left, Right& right) {
    join_latent_on(*local_worker(), left, right);
  }

  /// join_latent on the pool the calling thread is a worker of; false (nothing ran) when it is
  /// no pool's worker.
  template <class Left, class Right>
  static bool join_here(Left& left, Right& right) {
    worker* w = tls_worker();
    if (w == nullptr || !w->owner->usable()) return false;
    w->owner->join_latent_on(*w, left, right);
    return true;
  }

 private:
  template <class Left, class Right>
  void join_latent_on(worker& w, Left& left, Right& right) {
    struct latent_task : task {
      latent_task(Right& fn, isolation_tag t) : task(&run, t), fn_(&fn) {}
      static void run(task* base) noexcept {
        auto* self = static_cast<latent_task*>(base);
        try {
          (*self->fn_)();
        } catch (...) {
          self->error_ = std::current_exception();
        }
        self->done_.set();
      }
      Right* fn_;
      std::exception_ptr error_;
      latch done_;
    };
    latent_task other(right, w.current_tag);
    const std::size_t depth = w.latent_depth;
    const bool recorded = depth < w.latent.size();  // deeper joins stay sequential
    if (recorded) {
      w.latent[depth] = &other;
      w.latent_depth = depth + 1;
    }
    offer_latent(w);
    std::exception_ptr failure;
    try {
      left();
    } catch (...) {
      failure = std::current_exception();
    }
    bool handed_out = false;
    if (recorded) {
      w.latent_depth = depth;
      if (depth < w.handed_out) {  // records below handed_out went to the pool, in order
        handed_out = true;
        w.handed_out = depth;
      }
    }
    if (handed_out) {
      wait(other.done_, w.current_tag);  // usually taken back from our deque if nobody stole it
      if (!failure) failure = other.error_;
    } else {
      try {
        right();
      } catch (...) {
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
  }

 public:
  /// True when splitting now would feed someone: a worker is looking for work (or `eager`: the
  /// caller's next step is long enough that a worker turning hungry meanwhile should find work
  /// waiting) and the caller's own deque holds nothing that worker could take instead.
  bool should_split(bool eager = false) const noexcept {
    if (!eager && !hungry()) return false;
    worker* w = local_worker();
    return w == nullptr || w->deque.empty();
  }

  /// How long an outside thread expects to wait.
  enum class expect { short_wait, long_wait };

  /// Returns once l is set. A worker of this scheduler runs tasks tagged `tag` meanwhile; any
  /// other thread sleeps, after watching l for a few microseconds unless the wait is known to
  /// be long: then its spin would only take a core from the workers that are to set l (all
  /// cores run a worker in the default pool). 100 items of 1 us on 2 cores: 83 us with the
  /// spin (the second worker started 36 us late, when the caller's spin ended), 61 us without.
  void wait(latch& l, isolation_tag tag, expect how = expect::short_wait) {
    if (l.is_set()) return;
    if (worker* w = local_worker())
      help_until(*w, l, tag, nullptr);
    else
      block_until(l, nullptr, how == expect::short_wait ? spin_before_sleep : 0);
  }

  /// As wait(), but gives up at `deadline`; returns whether l is set.
  bool wait_until(latch& l, isolation_tag tag, std::chrono::steady_clock::time_point deadline) {
    if (l.is_set()) return true;
    if (worker* w = local_worker()) return help_until(*w, l, tag, &deadline);
    return block_until(l, &deadline);
  }

  /// Waits for a latch that no pool task will set (a process pool's future): watches it for
  /// a few microseconds first (a short task's result comes sooner than a sleeping thread
  /// wakes), then sleeps.
  static bool block(latch& l, const std::chrono::steady_clock::time_point* deadline) {
    (void)spin_until([&l] { return l.is_set(); }, 30'000);
    return block_until(l, deadline);
  }

 private:
  struct worker {
    worker(scheduler& s, std::size_t i)
        : owner(&s), index(i), random(0x9e3779b97f4a7c15ULL * (i + 1)) {}
    work_deque deque;
    detail::parker parker;
    scheduler* owner;
    std::size_t index;
    isolation_tag current_tag = any_tag;
    std::uint64_t random;
    std::thread thread;
    // join_latent's records, touched by this worker only: the right() parts of the joins under
    // way, outermost first; those below handed_out were given to the pool.
    std::array<task*, 128> latent{};
    std::size_t latent_depth = 0;
    std::size_t handed_out = 0;
  };

  // At a join: a worker is hungry and our deque holds nothing it could take, so hand it the
  // oldest latent right() (one at a time: the next goes once this one was taken).
  void offer_latent(worker& w) {
    if (w.handed_out < w.latent_depth && hungry() && w.deque.empty())
      spawn(w.latent[w.handed_out++]);
  }

  // Joins the workers started by a constructor that gives up (no destructor will run): they
  // pass the gate, see stop_ and end.
  void stop_started() noexcept {
    gave_up_ = true;  // read by the workers after the gate, which publishes it
    stop_.store(true, std::memory_order_seq_cst);
    open_gate();
    stop_running();
  }

  // Sets stop_, wakes every worker and joins those that were started.
  void stop_running() noexcept {
    stop_.store(true, std::memory_order_seq_cst);
    for (auto& w : workers_) w->parker.unpark();
    for (auto& w : workers_)
      if (w->thread.joinable()) w->thread.join();
  }

  // On a worker thread, before its first task: the pool's on_start hook. False when it threw
  // (the constructor then stops the pool; this thread ends without its on_exit).
  bool start_hook(const worker& w) noexcept {
    if (!hooks_.on_start) return true;
    bool started = true;
    try {
      hooks_.on_start();
    } catch (...) {
      started = false;
      std::lock_guard lock(start_mutex_);
      if (start_failure_.empty()) {
        const std::string what = os::current_exception_message();
        start_failure_ = "the initializer threw on worker thread " + std::to_string(w.index + 1) +
                         " of " + std::to_string(workers_.size()) + ": " +
                         os::current_exception_type_name() + (what.empty() ? "" : ": " + what);
      }
    }
    started_.fetch_add(1, std::memory_order_acq_rel);
    started_.notify_all();
    return started;
  }

  // The constructor, when the pool has an on_start hook: waits until it ran on every worker;
  // when it threw on one, stops the pool and throws parallel::error naming the exception.
  void await_start_hooks(std::string_view who) {
    const auto all = static_cast<std::uint32_t>(workers_.size());
    for (std::uint32_t seen = started_.load(std::memory_order_acquire); seen < all;
         seen = started_.load(std::memory_order_acquire))
      started_.wait(seen, std::memory_order_acquire);
    std::string failure;
    {
      std::lock_guard lock(start_mutex_);
      failure = start_failure_;
    }
    if (failure.empty()) return;
    stop_running();
    throw error(std::string(who) + ": " + failure +
                " (the pool was not created; the other workers ran their on_exit)");
  }

  void open_gate() noexcept {
    gate_.store(1, std::memory_order_release);
    gate_.notify_all();
  }

  static std::string refused_message(std::string_view who, std::size_t started,
                                     std::size_t wanted) {
    return std::string(who) + ": the system refused worker thread " + std::to_string(started + 1) +
           " of " + std::to_string(wanted) +
           " (the user's process/thread limit, ulimit -u / RLIMIT_NPROC, a cgroup's pids.max "
           "or kernel.threads-max is reached, or no memory is left for its stack); ask for "
           "fewer workers, or raise the limit";
  }

  // Spin budget before sleeping: long enough to bridge the gaps between the tasks of one call,
  // short enough that an idle pool stops using CPU within tens of microseconds.
  static constexpr int idle_spin_rounds = 32;
  static constexpr int wait_spin_rounds = 256;
  static constexpr int pauses_per_round = 16;
  static constexpr std::size_t max_injected_batch = 32;

  static worker*& tls_worker() noexcept {
    thread_local worker* w = nullptr;
    return w;
  }

  worker* local_worker() const noexcept {
    worker* w = tls_worker();
    return w != nullptr && w->owner == this && usable() ? w : nullptr;
  }

  void execute(worker& w, task* t) {
    under_tag(w, t->tag_, [t] { t->execute_(t); });
  }

  // Calls run() as part of the call tagged `tag`: what w submits meanwhile inherits that tag.
  template <class Run>
  static void under_tag(worker& w, isolation_tag tag, Run&& run) {
    const isolation_tag outer = w.current_tag;
    w.current_tag = tag;
    run();
    w.current_tag = outer;
  }

  // An idle worker takes a batch (up to half the queue) onto its own deque, where the others
  // can steal from it: a stream of outside submits is spread without one lock per task.
  task* take_injected(worker& w, isolation_tag tag) {
    return injected_.take(tag, max_injected_batch, [&w](task* t) { w.deque.push(t); });
  }

  task* find_task(worker& w, isolation_tag tag) {
    if (task* t = w.deque.pop(tag)) return t;
    if (task* t = take_injected(w, tag)) return t;
    const std::size_t n = workers_.size();
    if (n == 1) return nullptr;
    // xorshift64 picks where the steal round starts, so thieves spread over the victims.
    w.random ^= w.random << 13;
    w.random ^= w.random >> 7;
    w.random ^= w.random << 17;
    const std::size_t start = static_cast<std::size_t>(w.random % n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t victim = (start + i) % n;
      if (victim == w.index) continue;
      if (task* t = workers_[victim]->deque.steal(tag)) return t;
    }
    return nullptr;
  }

  task* spin_for_task(worker& w, isolation_tag tag, int rounds, const latch* done) {
    for (int round = 0; round < rounds; ++round) {
      for (int i = 0; i < pauses_per_round; ++i) cpu_relax();
      if (done != nullptr && done->is_set()) return nullptr;
      if (task* t = find_task(w, tag)) return t;
      if (round >= rounds / 2) std::this_thread::yield();
    }
    return nullptr;
  }

  /// Wakes one sleeping worker that can run a task tagged `tag`: one asleep in its idle loop, or
  /// one parked while waiting for that very call. The caller published the task with a seq_cst
  /// store, so this seq_cst load cannot miss a worker that announced its sleep before that
  /// store; a worker announcing later sees the task in its last look (README.md).
  void wake_one(isolation_tag tag) noexcept {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    const std::size_t n = workers_.size();
    const std::size_t start = wake_cursor_.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
      worker& w = *workers_[(start + i) % n];
      std::uint32_t state = w.parker.asleep.load(std::memory_order_acquire);
      if (state == parker::awake) continue;
      if (state == parker::waiting && w.parker.waiting_for.load(std::memory_order_relaxed) != tag)
        continue;
      if (w.parker.asleep.compare_exchange_strong(state, parker::awake,
                                                  std::memory_order_acq_rel)) {
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        w.parker.unpark();
        return;
      }
    }
  }

  // Announces that w is about to sleep; every later spawn() sees it (README.md).
  void announce_sleep(worker& w, std::uint32_t why, isolation_tag tag) noexcept {
    w.parker.waiting_for.store(tag, std::memory_order_relaxed);
    w.parker.asleep.store(why, std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
  }

  void withdraw_sleep(worker& w) noexcept {
    if (w.parker.asleep.exchange(parker::awake, std::memory_order_acq_rel) != parker::awake)
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }

  void run_worker(worker& w) {
    tls_worker() = &w;
    bool hungry = true;  // counted in hungry_ by the constructor
    for (;;) {
      task* t = find_task(w, any_tag);
      if (t == nullptr) {
        if (!hungry) {
          hungry = true;
          hungry_.fetch_add(1, std::memory_order_relaxed);
        }
        t = spin_for_task(w, any_tag, idle_spin_rounds, nullptr);
        if (t == nullptr) {
          if (stop_.load(std::memory_order_acquire)) break;
          t = sleep_idle(w);
          if (t == nullptr) continue;
        }
      }
      if (hungry) {
        hungry = false;
        hungry_.fetch_sub(1, std::memory_order_relaxed);
      }
      execute(w, t);
    }
    if (hungry) hungry_.fetch_sub(1, std::memory_order_relaxed);
    tls_worker() = nullptr;
  }

  task* sleep_idle(worker& w) {
    const std::uint32_t seen = w.parker.epoch();
    announce_sleep(w, parker::idle, any_tag);
    task* t = find_task(w, any_tag);
    if (t == nullptr && !stop_.load(std::memory_order_seq_cst)) w.parker.park(seen);
    withdraw_sleep(w);
    return t;
  }

  /// Help-while-waiting. A parked waiter is woken by its latch, or by wake_one for a new task
  /// of the call it waits for (tasks of other calls wake someone else: it could not run them).
  bool help_until(worker& w, latch& l, isolation_tag tag,
                  const std::chrono::steady_clock::time_point* deadline) {
    bool hungry = false;
    auto settle = [&] {
      if (hungry) hungry_.fetch_sub(1, std::memory_order_relaxed);
      hungry = false;
    };
    while (!l.is_set()) {
      if (deadline != nullptr && std::chrono::steady_clock::now() >= *deadline) break;
      task* t = find_task(w, tag);
      if (t == nullptr) {
        if (!hungry) {
          hungry = true;
          hungry_.fetch_add(1, std::memory_order_relaxed);
        }
        t = spin_for_task(w, tag, wait_spin_rounds, &l);
      }
      if (t != nullptr) {
        settle();
        execute(w, t);
        continue;
      }
      if (l.is_set()) break;
      if (deadline != nullptr) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      const std::uint32_t seen = w.parker.epoch();
      if (!l.arm(w.parker)) break;
      announce_sleep(w, parker::waiting, tag);
      // Look once more after announcing: a task of ours pushed before cannot be missed, and
      // one pushed after wakes us (wake_one), as does the latch.
      t = find_task(w, tag);
      if (t == nullptr && !l.is_set()) w.parker.park(seen);
      withdraw_sleep(w);
      l.disarm(w.parker);
      if (t != nullptr) {
        settle();
        execute(w, t);
      }
    }
    settle();
    return l.is_set();
  }

  static constexpr int spin_before_sleep = 2000;  // pauses (~18 ns each here)

  static bool block_until(latch& l, const std::chrono::steady_clock::time_point* deadline,
                          int spins = spin_before_sleep) {
    for (int i = 0; i < spins; ++i) {
      if (l.is_set()) return true;
      cpu_relax();
    }
    if (deadline != nullptr) {
      auto pause = std::chrono::microseconds(50);
      while (!l.is_set()) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= *deadline) return false;
        std::this_thread::sleep_for(
            std::min<std::chrono::steady_clock::duration>(pause, *deadline - now));
        pause = std::min(pause * 2, std::chrono::microseconds(2000));
      }
      return true;
    }
    parker& p = this_parker();
    for (;;) {
      const std::uint32_t seen = p.epoch();
      if (!l.arm(p)) return true;
      p.park(seen);
      if (l.is_set()) return true;
      l.disarm(p);  // woken by an earlier latch's late unpark: arm again
    }
  }

  const std::uint64_t generation_;
  std::vector<std::unique_ptr<worker>> workers_;
  alignas(64) std::atomic<std::uint32_t> sleepers_{0};
  alignas(64) std::atomic<std::uint32_t> hungry_{0};
  std::atomic<std::size_t> wake_cursor_{0};
  std::atomic<bool> stop_{false};
  wait_word gate_{0};     // 1 once workers_ is final; workers start after it
  bool gave_up_ = false;  // the constructor failed before the gate opened
  injection_queue injected_;
  worker_hooks hooks_;
  wait_word started_{0};  // workers whose on_start returned or threw
  std::mutex start_mutex_;
  std::string start_failure_;  // what the first on_start that threw said (under start_mutex_)
};

}  // namespace parallel::detail
