// The caller's side of the process backends: a set of worker processes, one socketpair and one
// shared arena each, and the loop that sends them jobs and collects their results. One thread
// drives an engine (the caller's thread for a fork-per-call map, the pool's I/O thread for a
// process_pool); the jobs' sinks are called on that thread.
//
// Every wait here has a way out: a worker's end is seen at once (its process watch fires, its
// channel reaches EOF), a job's timeout is checked against the time the worker says the item
// started (shared memory, no message needed), and a frame that breaks the protocol stops that
// worker. The job the dead worker was running fails; the jobs queued behind it go to the other
// workers; the slot gets a new worker.
//
// A worker that cannot be started (no descriptors, processes or memory left, a forkserver that
// refuses) leaves its slot empty: the engine goes on with the workers it has, tries the slot
// again on later work, and fails the waiting jobs with spawn_error only when no worker is left.
// Ending a worker never waits without a bound: one that does not end within a short grace period
// after its channel closed (stopped by a debugger, frozen) is killed. Every signal goes to a
// worker the engine started and has not reaped, through its process watch where there is one.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../process_platform.hpp"
#include "arena.hpp"
#include "frame.hpp"
#include "frame_reader.hpp"
#include "identity.hpp"
#include "payload_cache.hpp"
#include "worker.hpp"

namespace parallel::detail::ipc {

struct job;

/// Who receives a job's outcome. Called on the engine's thread, in this order: results (once,
/// possibly with k = 0), then failed() when the job did not finish, then done().
class job_sink {
 public:
  /// Decode `k` results of items job.first, job.first + 1, ...
  virtual void results(job& j, decoder& in, std::uint64_t k, std::uint64_t nanoseconds) = 0;
  virtual void failed(job& j, std::exception_ptr error) = 0;
  virtual void done(job& j) = 0;

 protected:
  ~job_sink() = default;
};

struct job {
  std::uint64_t first = 0;  // index of the first item (for error messages and sinks)
  std::uint64_t count = 0;  // items
  std::vector<std::byte> payload;
  // The rest of the payload, read where the call keeps it (a map's items, bitwise, side by
  // side): copied into the frame at each send, so its memory must outlive every send. It does:
  // the call waits for its jobs, and a job whose call has gone (no sink) is never sent.
  std::span<const std::byte> borrowed;
  job_sink* sink = nullptr;  // null once cancelled: the outcome is dropped
  std::chrono::milliseconds timeout{0};
  std::uint64_t tag = 0;  // the sink's own bookkeeping
  // The engine's.
  std::uint64_t id = 0;
  std::uint64_t seq = 0;      // position in its worker's task stream
  std::uint64_t sent_ns = 0;  // when it was given to that worker
  // Taken back from its worker before it started (control_block::withdraw): what stays in that
  // worker's queue is this mark, without sink, until the worker says it skipped the task.
  bool withdrawn = false;
};

/// The end of a result payload (worker.hpp's layout), after its results: nothing when the task
/// finished, else the exception it raised, as remote_error (or spawn_error when the worker could
/// not find the task's code, identity.hpp's resolve: a start-up problem, not the task's).
/// `where` is appended to the message (" (on MPI rank 2)"). Throws a protocol error on bytes
/// the layout does not have.
inline std::exception_ptr read_task_failure(decoder& in, const std::string& where = {}) {
  const auto failed = in.read<std::uint8_t>();
  if (failed == 0 && in.done()) return nullptr;
  if (failed != 1) wire::protocol_error("a worker's result payload has trailing or unknown bytes");
  const auto index = in.read<std::uint64_t>();
  std::string type = in.read<std::string>();
  std::string what = in.read<std::string>();
  if (type == "parallel::spawn_error") return std::make_exception_ptr(spawn_error(what + where));
  return std::make_exception_ptr(
      remote_error("parallel: " +
                       (index == remote_error::no_index ? std::string("a task")
                                                        : "item " + std::to_string(index)) +
                       " raised " + type + (what.empty() ? std::string() : ": " + what) + where,
                   type, static_cast<std::size_t>(index)));
}

/// How a worker ended: its wait status (-1: not known), and what the start method knows of why
/// (a forkserver's workers die with their server).
struct worker_end {
  int status = -1;
  std::string note{};
};

/// How the callers of a loop that drives an engine (a pool's I/O thread) tell it about new
/// work without a system call while it is awake: they count a post, then ring only when the
/// loop said it sleeps (ring.hpp's doorbell protocol, with `wake` as the socket).
struct mailbox_bell {
  std::atomic<std::uint64_t> posted{0};
  doorbell bell;
  std::uint64_t seen = 0;  // the loop's (or a driving caller's): the posts it has taken
  /// Callers that want to drive the engine (engine::begin_driving): the loop does not spin for
  /// news while there are any, it lets them have the engine.
  std::atomic<int> drivers{0};

  /// A caller, after it posted: true when it must signal the loop's wakeup.
  bool post() noexcept {
    posted.fetch_add(1, std::memory_order_seq_cst);
    return bell.must_ring();
  }
  bool pending() const noexcept { return posted.load(std::memory_order_seq_cst) != seen; }
};

class engine {
 public:
  /// Starts a worker process; returns its pid. `child_channel` is the worker's end of the
  /// channel, `shared` its arena. A fork-based starter runs worker_main in the child.
  using starter = std::function<os::pid_type(os::native_handle child_channel, arena& shared)>;

  struct config {
    std::size_t workers = 1;
    std::size_t max_tasks_per_child = 0;  // 0 = no limit
    bool keep_workers = false;            // restart a dead worker at once (pools)
    std::size_t ring_bytes = std::size_t{64} << 20;
    /// A worker that has not said hello within this time is stopped (0 = no limit). Spawned
    /// workers get one: a main() without parallel::spawn_main never answers.
    std::chrono::milliseconds handshake_timeout{0};
    /// A worker that answered but is not ready for tasks (the pool's initializer has not
    /// returned) within this time is stopped; what waits for it fails with spawn_error. A job
    /// with a timeout of its own waits for a worker to become ready no longer than that.
    /// 0 = no limit.
    std::chrono::milliseconds start_timeout{0};
    /// Appended to the error when a worker ends before its handshake.
    std::string startup_hint{};
    /// Collects a worker that ended; empty = waitpid (the worker is our child). A forkserver's
    /// workers are the server's children: it reports them. Must not wait without a bound.
    std::function<worker_end(os::pid_type)> reaper{};
    /// Counts the jobs given to their sink's done() (for callers that watch it: pool_runner).
    std::atomic<std::uint64_t>* delivered = nullptr;
    /// Where a finished job leaves its payload buffer for the callers' next jobs (null: freed).
    payload_cache* spares = nullptr;
  };

  /// How long a worker whose channel closed may take to end before it is killed.
  static constexpr int end_grace_ms = 1000;

  /// With keep_workers, starts every worker now; when one cannot be started, those already
  /// started are ended and reaped and the constructor throws spawn_error.
  engine(config cfg, starter start)
      : cfg_(std::move(cfg)), start_(std::move(start)), slots_(cfg_.workers) {
    (void)anchor_location();  // computed once here, not again in every worker
    if (!cfg_.keep_workers) return;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (try_launch(slots_[i])) continue;
      shut_down();
      throw spawn_error(
          "parallel: worker " + std::to_string(i + 1) + " of " + std::to_string(slots_.size()) +
          " could not be started (" + last_start_cause_ +
          "); the pool was not made (its other workers were "
          "ended)" +
          (gives_advice(last_start_cause_) ? std::string() : ". " + std::string(limits_advice)));
    }
  }

  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Ends every worker: idle ones see their channel close and exit; busy ones are killed, and
  /// so are idle ones that have not ended after end_grace_ms (stopped, frozen).
  ~engine() { shut_down(); }

  std::size_t size() const noexcept { return slots_.size(); }

  /// Starts a worker in every empty slot now, not when work comes. Per-call fork does so before
  /// the call's result memory exists: the caller's writes to it are then no copy-on-write
  /// faults. A start that fails leaves its slot to dispatch(), as a start on demand would.
  void start_workers() {
    for (auto& s : slots_)
      if (s.pid < 0) (void)try_launch(s);
  }

  void post(std::unique_ptr<job> j) {
    j->id = ++last_id_;
    pending_.push_back(std::move(j));
  }

  /// Drops the sink's jobs that were not sent, withdraws those sent that have not started, and
  /// forgets the outcome of those running.
  void cancel(const job_sink* sink) {
    std::erase_if(pending_, [sink](const std::unique_ptr<job>& j) { return j->sink == sink; });
    for (auto& s : slots_)
      for (auto& j : s.in_flight) {
        if (j->sink != sink) continue;
        j->sink = nullptr;
        if (!j->withdrawn && s.shared && s.shared->control().withdraw(j->seq)) j->withdrawn = true;
      }
  }

  /// Takes the sink's job back (future::cancel): out of the queue if it was not sent yet, or out
  /// of its worker's queue if the worker has not started it (control_block::withdraw). True
  /// when it was taken back: its sink is then never called. A job that started stays.
  bool withdraw(const job_sink* sink) {
    const auto it = std::find_if(pending_.begin(), pending_.end(),
                                 [sink](const std::unique_ptr<job>& j) { return j->sink == sink; });
    if (it != pending_.end()) {
      pending_.erase(it);
      return true;
    }
    for (auto& s : slots_)
      for (auto& j : s.in_flight) {
        if (j->sink != sink || j->withdrawn) continue;
        if (!s.shared || !s.shared->control().withdraw(j->seq)) return false;
        j->withdrawn = true;
        j->sink = nullptr;
        return true;
      }
    return false;
  }

  /// Jobs posted and not finished whose outcome someone still waits for (a cancelled job
  /// still running in a worker does not count: destroying the engine kills that worker).
  std::size_t outstanding() const noexcept {
    std::size_t n = 0;
    for (const auto& j : pending_) n += j->sink != nullptr ? 1 : 0;
    for (const auto& s : slots_)
      for (const auto& j : s.in_flight) n += j->sink != nullptr ? 1 : 0;
    return n;
  }
  std::size_t pending() const noexcept { return pending_.size(); }

  /// Fails every job not yet sent (the engine could not start a worker for them), each with
  /// an exception of its own from `make`.
  void fail_pending(const std::function<std::exception_ptr()>& make) {
    std::deque<std::unique_ptr<job>> waiting = std::move(pending_);
    pending_.clear();
    fail_all(std::move(waiting), make);
  }

  /// For a loop that cannot go on as it is (an error it cannot place): every job fails with an
  /// exception of its own from `make`, and the workers are replaced, so nothing waits for an
  /// outcome that would never come.
  void fail_everything(const std::function<std::exception_ptr()>& make) {
    for (auto& s : slots_) {
      if (s.pid < 0) continue;
      std::deque<std::unique_ptr<job>> jobs = std::move(s.in_flight);
      s.in_flight.clear();
      fail_all(std::move(jobs), make);
      stop_worker(s, stop_reason::replace, {});
    }
    fail_pending(make);
  }

  /// Nanoseconds a job took in its worker, on average lately (0 before the first result).
  std::uint64_t typical_job_ns() const noexcept { return job_ns_; }

  /// One round: sends what can be sent, waits up to `wait_ms` (-1: until something happens)
  /// for results, deaths, timeouts or `wake`, and handles them. Returns true when `wake` was
  /// signalled.
  /// With `mail`, new posts end a spin and keep the loop from sleeping, like `wake`.
  bool pump(int wait_ms, const os::wakeup* wake = nullptr, mailbox_bell* mail = nullptr) {
    const int timeout = prepare_wait(wait_ms, wake, mail);
    if (timeout == nothing_to_wait) return false;
    return finish_wait(wait_now(timeout), mail);
  }

  /// pump()'s three steps, for a loop that lets go of the engine while it sleeps (a pool's, so
  /// that a waiting caller may drive it meanwhile: begin_driving). prepare_wait sends, builds
  /// the wait set and tells the workers whether to ring the socket; it returns the timeout for
  /// wait_now, or nothing_to_wait. wait_now touches only the wait set, which a driving caller
  /// never does; finish_wait handles what woke it.
  static constexpr int nothing_to_wait = -2;

  int prepare_wait(int wait_ms, const os::wakeup* wake, mailbox_bell* mail) {
    retire_finished();
    // A worker found dead while its jobs are flushed puts them back and leaves its slot to be
    // started again: then round again, or the wait below would have no worker to wake it.
    bool again = true;
    for (int round = 0; again && round < 8; ++round) {
      replenish();
      dispatch();
      again = flush_all();
    }
    waits_.clear();
    owners_.clear();
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      slot& s = slots_[i];
      if (s.pid < 0) continue;
      waits_.add_channel(s.channel, s.out_sent < s.out.size());
      owners_.push_back({i, s.generation, false});
      if (s.watch) {
        waits_.add_watch(s.watch);
        owners_.push_back({i, s.generation, true});
      }
    }
    for (const auto& r : retired_) {
      if (!r.watch) continue;
      waits_.add_watch(r.watch);
      owners_.push_back({retired_slot, 0, true});
    }
    if (wake != nullptr) {
      waits_.add_wakeup(*wake);
      owners_.push_back({no_slot, 0, false});
    }
    if (waits_.empty()) return nothing_to_wait;
    int timeout =
        std::min(wait_ms < 0 ? std::numeric_limits<int>::max() : wait_ms, next_deadline_ms());
    if (again) timeout = 0;  // still workers to start: look, but do not sleep
    // Results already in the rings, or coming within a short spin: no sleep, no system call.
    // Otherwise each worker is told that the caller sleeps (it rings the socket after its next
    // result), and the rings are looked at once more (ring.hpp's doorbell). A caller that wants
    // to drive the engine ends the spin: the loop sleeps and lets it.
    const auto news = [&] { return results_ready() || (mail != nullptr && mail->pending()); };
    const auto drivers = [&] {
      return mail != nullptr && mail->drivers.load(std::memory_order_relaxed) > 0;
    };
    if (timeout != 0 &&
        (news() || (!drivers() && spin_worth_it(mail != nullptr) &&
                    spin_until([&] { return news() || drivers(); }, engine_spin_ns) && news())))
      timeout = 0;
    if (timeout != 0) {
      callers_watch(false);
      if (mail != nullptr) mail->bell.sleeping();
      if (news()) timeout = 0;
    }
    return timeout == std::numeric_limits<int>::max() ? -1 : timeout;
  }

  int wait_now(int timeout) { return waits_.wait(timeout); }

  bool finish_wait(int ready, mailbox_bell* mail) {
    callers_watch(true);
    if (mail != nullptr) mail->bell.awake();
    bool woken = false;
    if (ready > 0) {
      for (std::size_t k = 0; k < waits_.size(); ++k) {
        if (!waits_.any(k)) continue;
        const owner& o = owners_[k];
        if (o.slot == no_slot) {
          woken = true;
          continue;
        }
        if (o.slot == retired_slot) continue;  // collect_retired() below
        slot& s = slots_[o.slot];
        if (s.pid < 0 || s.generation != o.generation) continue;  // handled this round
        if (o.watch) {
          end_worker(s);
        } else {
          if (waits_.writable(k) && !flush(s)) {
            end_worker(s);
            continue;
          }
          if (waits_.readable(k)) receive(s);
        }
      }
    }
    for (auto& s : slots_) drain(s);
    check_timeouts();
    collect_retired();
    return woken || (mail != nullptr && mail->pending());
  }

  // --- driven by a waiting caller -------------------------------------------------------------
  // A pool's loop (its I/O thread) owns the engine, but while a caller waits for short jobs it
  // may drive the engine itself, the loop asleep meanwhile (process_pool_core::drive): tasks go
  // from the caller's thread into the rings and results come back to it, with no hop through
  // the loop. A driving caller starts no process (Linux ties PR_SET_PDEATHSIG to the thread
  // that forked) and closes no descriptor (the loop polls them, outside the engine's lock): what
  // needs either (a worker to start, a dead or retiring one, a job's timeout to watch) is left
  // to the loop, and needs_loop() says so.

  /// A caller takes the engine: it watches the result rings, so the workers need not ring.
  void begin_driving() noexcept {
    driving_ = true;
    callers_watch(true);
  }

  /// A caller that posts sends the jobs itself when no one drives (the loop asleep): as
  /// drive_round() but it handles no result and calls no sink, since the caller may hold its
  /// call's lock. A job that cannot be sent now stays for the loop.
  void send_round() {
    driving_ = true;
    sending_only_ = true;
    struct restore {
      engine& e;
      ~restore() { e.driving_ = e.sending_only_ = false; }
    } guard{*this};
    dispatch();
    (void)flush_all();
  }

  /// One round of a driving caller: sends what can be sent, handles what the rings hold.
  /// Returns the number of results handled.
  std::uint64_t drive_round() {
    const std::uint64_t before = handled_;
    dispatch();
    (void)flush_all();
    for (auto& s : slots_) drain(s);
    return handled_ - before;
  }

  /// The caller lets go: from now on a worker rings the socket after a result (the loop may be
  /// asleep), and what the rings held before that is handled now.
  void end_driving() {
    callers_watch(false);
    for (auto& s : slots_) drain(s);
    (void)flush_all();
    driving_ = false;
  }

  /// end_driving() for a driver that met an exception: the loop reads the rings (and is woken
  /// for it: needs_loop()).
  void abandon_driving() noexcept {
    callers_watch(false);
    driving_ = false;
    needs_loop_ = true;
  }

  /// Whether a driving caller left something only the loop may do (and forgets it).
  bool needs_loop() noexcept { return std::exchange(needs_loop_, false); }

  /// Whether a waiting caller should drive: jobs are short and there are some to send or to
  /// wait for (a long job's result is waited for asleep, as the loop does).
  bool worth_driving() const noexcept {
    if (job_ns_ > spin_job_ns) return false;
    if (!pending_.empty()) return true;
    for (const auto& s : slots_)
      if (s.pid >= 0 && s.rings && s.greeted && live_jobs(s) > 0) return true;
    return false;
  }

 private:
  static constexpr std::size_t no_slot = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t retired_slot = no_slot - 1;
  /// After a worker could not be started, its slot is tried again no sooner than this, unless
  /// no worker is left (then at once: the jobs would otherwise fail).
  static constexpr std::uint64_t start_retry_ns = 100'000'000;
  /// A job this long (lately, on average) has no job queued behind it in its worker (depth()).
  static constexpr std::uint64_t long_job_ns = 1'000'000;
  /// About this much work waits in a worker behind its running job (depth(), dispatch()).
  static constexpr std::uint64_t queue_budget_ns = 1'000'000;
  /// Before it sleeps, the engine watches the result rings this long when results are due soon
  /// (spin_worth_it): short jobs then cost no system call on the caller's side.
  static constexpr std::uint64_t engine_spin_ns = 20'000;
  /// Jobs longer than this (lately, on average) are not waited for by spinning.
  static constexpr std::uint64_t spin_job_ns = 200'000;
  // Why the engine stopped a worker: a task's timeout, a start that took too long, a frame that
  // broke the protocol, or none of its jobs' doing (the caller could not take a result: the
  // result's job failed already, the others go to other workers).
  enum class stop_reason { none, timeout, start_timeout, protocol, replace };

  struct slot {
    os::pid_type pid = -1;
    os::channel channel;
    os::process_watch_handle watch;
    std::unique_ptr<arena> shared;
    frame_ring tasks;    // our end of its task ring (unusable: tasks go by the socket)
    frame_ring results;  // our end of its result ring
    bool rings = false;
    std::deque<frame> channel_results;  // results that came by the socket, for marks in the ring
    std::uint64_t last_result_id = 0;   // the last result header read from the socket
    std::unique_ptr<frame_reader> reader;
    std::vector<std::byte> out;
    std::size_t out_sent = 0;
    std::deque<std::unique_ptr<job>> in_flight;
    std::uint64_t sent = 0;            // tasks sent to this worker
    std::uint64_t front_since_ns = 0;  // when its first job in flight was sent or began
    std::uint64_t generation = 0;      // bumped at each launch: poll results of a former worker
    bool greeted = false;              // ready for tasks (its initializer, if any, has run)
    bool alive = false;                // said hello at all
    bool relaunch = false;             // empty, and to get a worker without waiting for jobs
    std::uint64_t launched_ns = 0;
    std::uint64_t start_failed_ns = 0;  // when a start last failed here (0: it did not)
    std::uint64_t failed_round = 0;     // the dispatch() round of that failure
    std::uint64_t alive_ns = 0;         // when it said hello
    std::size_t results_parsed = 0;     // result headers read whose frames are not handled yet
    std::string startup_error;
    stop_reason stopping = stop_reason::none;
    std::string stop_message;
  };

  /// A worker that left its slot (max_tasks_per_child) and has yet to end and be reaped: the
  /// loop goes on meanwhile, and kills it when it outstays end_grace_ms.
  struct retired {
    os::pid_type pid = -1;
    os::process_watch_handle watch;
    std::uint64_t deadline_ns = 0;
    bool killed = false;
  };

  // --- starting and ending workers ------------------------------------------------------------

  /// Starts a worker in `s`, or throws and leaves `s` empty. Whatever can fail is made before
  /// the process exists, so a failure never leaves a process behind.
  void launch(slot& s) {
    auto [mine, theirs] = os::make_channel();
    auto shared = std::make_unique<arena>(cfg_.ring_bytes);
    auto reader = std::make_unique<frame_reader>(max_task_payload);
    s.out.clear();
    s.out_sent = 0;
    const os::pid_type pid = start_(theirs.get(), *shared);
    if (pid <= 0) throw spawn_error("parallel: starting a worker gave no process id");
    theirs.reset();
    s.pid = pid;
    s.channel = std::move(mine);
    s.shared = std::move(shared);
    s.tasks = s.shared->task_ring();
    s.results = s.shared->result_ring();
    s.rings = s.tasks.usable() && s.results.usable();
    s.channel_results.clear();
    s.reader = std::move(reader);
    s.watch = os::watch_process(s.pid);
    // A result header is checked as soon as it arrives, before its payload: a result for a task
    // the worker was not given fails now, not after the bytes it announces (which may never
    // come).
    s.results_parsed = 0;
    s.reader->check_headers([&s](const frame_header& h) { check_header(s, h); });
    ++s.generation;
    s.sent = 0;
    s.greeted = false;
    s.alive = false;
    s.relaunch = false;
    s.launched_ns = os::monotonic_ns();
    s.start_failed_ns = 0;
    s.startup_error.clear();
    s.stopping = stop_reason::none;
  }

  /// launch(), with a failure recorded instead of thrown: the slot stays empty.
  bool try_launch(slot& s) {
    try {
      launch(s);
      return true;
    } catch (const std::exception& e) {
      last_start_cause_ = e.what();
    } catch (...) {
      last_start_cause_ = "an unknown exception";
    }
    if (last_start_cause_.rfind("parallel: ", 0) == 0) last_start_cause_.erase(0, 10);
    last_start_error_ = start_failure_message(last_start_cause_);
    s.relaunch = false;
    s.start_failed_ns = std::max<std::uint64_t>(os::monotonic_ns(), 1);
    return false;
  }

  static constexpr const char* limits_advice =
      "check the limits on processes (ulimit -u), open files (ulimit -n) and memory (ulimit -v), "
      "or use fewer workers";

  /// True when a start's error already says what to do: which limit to raise (the OS layer's
  /// EMFILE and RLIMIT_AS messages do), or to call spawn_main (a forkserver that never answered).
  static bool gives_advice(const std::string& why) {
    return why.find("ulimit") != std::string::npos || why.find("spawn_main") != std::string::npos;
  }

  std::string start_failure_message(const std::string& why) const {
    std::size_t running = 0;
    for (const auto& s : slots_) running += s.pid >= 0 ? 1 : 0;
    std::string text = "parallel: a worker process could not be started (" + why + ")";
    if (running > 0)
      text += "; the pool goes on with " + std::to_string(running) + " of " +
              std::to_string(slots_.size()) + " workers and tries again later";
    if (!gives_advice(why))
      text += running > 0 ? ". If this persists, " + std::string(limits_advice)
                          : "; " + std::string(limits_advice);
    return text;
  }

  std::size_t running_workers() const noexcept {
    std::size_t n = 0;
    for (const auto& s : slots_) n += s.pid >= 0 && s.stopping == stop_reason::none ? 1 : 0;
    return n;
  }

  /// Tells every worker whether someone on the caller's side watches its result ring (the loop
  /// spinning, or a driver): if not, it rings the socket after each result (ring.hpp).
  void callers_watch(bool watching) noexcept {
    for (auto& s : slots_) {
      if (s.pid < 0 || !s.rings) continue;
      if (watching)
        s.shared->control().caller_bell.awake();
      else
        s.shared->control().caller_bell.sleeping();
    }
  }

  /// Retires the workers that did their share (max_tasks_per_child) while a caller drove.
  void retire_finished() {
    for (auto& s : slots_)
      if (s.pid >= 0 && s.stopping == stop_reason::none && retiring(s) && s.in_flight.empty())
        retire(s);
  }

  /// Starts the workers that left their slot in good standing (they died or retired); a start
  /// that fails leaves the slot to dispatch(), which tries it again when work comes.
  void replenish() {
    for (auto& s : slots_)
      if (s.relaunch && s.pid < 0) (void)try_launch(s);
  }

  /// Ends every worker and waits (bounded) for each: channels close first, so idle workers
  /// end on their own; busy ones are killed; any still there after end_grace_ms is killed.
  void shut_down() noexcept {
    const std::uint64_t deadline = os::monotonic_ns() + end_grace_ms * 1'000'000ull;
    for (auto& s : slots_) {
      if (s.pid < 0) continue;
      if (!s.in_flight.empty()) os::signal_process(s.watch, s.pid, os::kill_signal);
      s.channel.reset();
    }
    for (auto& s : slots_) {
      if (s.pid < 0) continue;
      (void)finish(s.pid, s.watch, deadline);
      s.pid = -1;
      s.watch.reset();
    }
    for (auto& r : retired_) (void)finish(r.pid, r.watch, std::max(deadline, r.deadline_ns));
    retired_.clear();
  }

  /// Waits until `pid` ends, at most until `deadline_ns`, kills it if it is still there, and
  /// reaps it.
  worker_end finish(os::pid_type pid, const os::process_watch_handle& watch,
                    std::uint64_t deadline_ns) noexcept {
    const std::uint64_t now = os::monotonic_ns();
    const int left_ms = now >= deadline_ns ? 0 : static_cast<int>((deadline_ns - now) / 1'000'000);
    try {
      if (!cfg_.reaper && !watch) {  // our child, seen only through waitpid
        const int status = os::wait_at_most(pid, std::chrono::milliseconds(left_ms));
        if (status != -1) return {status, {}};
        os::send_signal(pid, os::kill_signal);
        return reap(pid);
      }
      if (watch && !os::ended_within(watch, left_ms))
        os::signal_process(watch, pid, os::kill_signal);
      worker_end end = reap(pid);
      if (end.status == -1 && watch && !os::ended_within(watch, 0)) {
        // The reaper had no news in time and the worker is still there: stop it.
        os::signal_process(watch, pid, os::kill_signal);
        end = reap(pid);
      }
      return end;
    } catch (...) {
      return {};
    }
  }

  /// max_tasks_per_child: the worker has done its share. Its channel closes (it ends on its
  /// own), it is reaped when it has ended (collect_retired), and a fresh one takes the slot.
  void retire(slot& s) {
    retired r;
    r.pid = s.pid;
    r.watch = std::move(s.watch);
    r.deadline_ns = os::monotonic_ns() + end_grace_ms * 1'000'000ull;
    s.pid = -1;
    s.channel.reset();
    s.shared.reset();
    s.reader.reset();
    s.relaunch = cfg_.keep_workers;
    if (!r.watch) {  // nothing to wait on: a bounded wait now
      (void)finish(r.pid, r.watch, r.deadline_ns);
      return;
    }
    retired_.push_back(std::move(r));
  }

  void collect_retired() {
    if (retired_.empty()) return;
    const std::uint64_t now = os::monotonic_ns();
    std::erase_if(retired_, [&](retired& r) {
      if (os::ended_within(r.watch, 0)) {
        try {
          (void)reap(r.pid);
        } catch (...) {
        }
        return true;
      }
      if (!r.killed && now >= r.deadline_ns) {
        os::signal_process(r.watch, r.pid, os::kill_signal);
        r.killed = true;
      }
      return false;
    });
  }

  // The worker ended, or must: collect what it sent, reap it, settle its jobs, and replace it.
  void end_worker(slot& s) {
    if (s.stopping == stop_reason::none) {
      receive(s, /*draining=*/true);
      drain(s);  // results it published in its ring before it ended count too
    }
    if (s.pid < 0) return;
    // Still running although its channel ended: it closed the channel itself.
    // (A dying process closes its descriptors before it can be waited for: give it a moment.)
    const bool was_alive =
        s.stopping == stop_reason::none && s.watch && !os::ended_within(s.watch, 200);
    os::signal_process(s.watch, s.pid, os::kill_signal);  // no-op when it is already gone
    worker_end end;
    try {
      end = reap(s.pid);
    } catch (...) {
    }
    const int status = end.status;
    const std::string note = end.note.empty() ? std::string() : " (" + end.note + ")";
    const os::pid_type pid = s.pid;
    const std::uint64_t started = s.shared->control().started_seq.load(std::memory_order_acquire);
    const std::uint64_t index = s.shared->control().current_index.load(std::memory_order_relaxed);
    s.pid = -1;
    s.channel.reset();
    s.watch.reset();
    std::deque<std::unique_ptr<job>> jobs = std::move(s.in_flight);
    s.in_flight.clear();
    s.shared.reset();
    s.reader.reset();

    if (s.stopping == stop_reason::replace) {
      // None of its jobs' doing: they go back to the queue, in order.
      for (auto it = jobs.rbegin(); it != jobs.rend(); ++it)
        if ((*it)->sink != nullptr) pending_.push_front(std::move(*it));
      s.relaunch = cfg_.keep_workers;
      return;
    }
    if (!s.greeted && restart_after_early_death(s, status)) {
      // Killed before it was ready, while others of this engine started well: a start that
      // was cut short (killed from outside, or by a sibling), not a start that cannot work.
      // Its jobs never ran (a worker runs none before it is ready): they go back to the queue.
      for (auto it = jobs.rbegin(); it != jobs.rend(); ++it)
        if ((*it)->sink != nullptr) pending_.push_front(std::move(*it));
      s.relaunch = cfg_.keep_workers;
      return;
    }
    if (!s.greeted) {
      // Died before it was ready: do not restart in a loop; fail what waits. (A later call
      // starts the slot again, through dispatch().)
      std::string why = s.startup_error;
      if (why.empty() && s.stopping == stop_reason::start_timeout) {
        why = s.stop_message;  // check_timeouts() says which limit it was
      } else if (why.empty()) {
        why =
            "parallel: a worker process (pid " + std::to_string(pid) + ") " +
            (s.stopping == stop_reason::timeout
                 ? "did not answer its handshake within " +
                       std::to_string(cfg_.handshake_timeout.count()) + " ms"
                 // Alive: it said hello, then ended in the pool's initializer,
                 // and the hint (spawn_main) is no help.
                 : (status == -1 ? std::string("ended") : os::describe_status(status)) + note +
                       (s.alive ? " while running the pool's initializer"
                                : " before its handshake")) +
            (cfg_.startup_hint.empty() || s.alive ? "; see its standard error" : cfg_.startup_hint);
      }
      const auto make = [&why] { return std::make_exception_ptr(spawn_error(why)); };
      fail_all(std::move(jobs), make);
      std::deque<std::unique_ptr<job>> waiting = std::move(pending_);
      pending_.clear();
      fail_all(std::move(waiting), make);
      return;
    }

    // Which job was running: the worker's started_seq. Earlier ones whose results never came
    // (they were buffered in the worker) and later ones go back to the queue, in order.
    std::deque<std::unique_ptr<job>> again;
    std::unique_ptr<job> culprit;
    for (auto& j : jobs) {
      if (j->seq == started)
        culprit = std::move(j);
      else
        again.push_back(std::move(j));
    }
    if (culprit) {
      std::exception_ptr error;
      const std::string item = index == remote_error::no_index
                                   ? std::string(" while running a task")
                                   : " while running item " + std::to_string(index);
      if (s.stopping == stop_reason::timeout) {
        error = std::make_exception_ptr(timeout_error(
            "parallel: " +
            (index == remote_error::no_index ? std::string("a task")
                                             : "item " + std::to_string(index)) +
            " ran longer than the timeout of " + std::to_string(culprit->timeout.count()) +
            " ms; its worker process (pid " + std::to_string(pid) + ") was killed and replaced"));
      } else if (s.stopping == stop_reason::protocol) {
        error = std::make_exception_ptr(
            parallel::error(s.stop_message + "; the worker process (pid " + std::to_string(pid) +
                            ") was stopped" + item + " and replaced"));
      } else if (was_alive) {
        error = std::make_exception_ptr(worker_died(
            "parallel: worker process (pid " + std::to_string(pid) + ") closed its channel" + item +
            " and kept running; it was stopped and replaced"));
      } else {
        error = std::make_exception_ptr(
            worker_died("parallel: worker process (pid " + std::to_string(pid) + ") " +
                        (status == -1 ? std::string("ended") : os::describe_status(status)) + note +
                        item + "; it was replaced"));
      }
      settle_failed(*culprit, std::move(error));
    }
    for (auto it = again.rbegin(); it != again.rend(); ++it) {
      if ((*it)->sink != nullptr) pending_.push_front(std::move(*it));
    }
    s.relaunch = cfg_.keep_workers;
  }

  /// Whether a worker that ended before it was ready is started again: only when it was ended
  /// by a signal (not an exit, an initializer's error or a handshake timeout), a worker of this
  /// engine has been ready before (the executable and the initializer work), and fewer than
  /// max_early_restarts such restarts came in a row. Otherwise what waits fails with
  /// spawn_error: no start loop.
  bool restart_after_early_death(const slot& s, int status) {
    if (!started_well_ || !s.startup_error.empty() || s.stopping != stop_reason::none ||
        status == -1 || !os::ended_by_signal(status) || early_restarts_ >= max_early_restarts)
      return false;
    ++early_restarts_;
    return true;
  }

  worker_end reap(os::pid_type pid) {
    if (cfg_.reaper) return cfg_.reaper(pid);
    return {os::wait_for(pid, true), {}};
  }

  // Each job gets an exception object of its own, and the engine keeps no reference to it:
  // once done() wakes the caller, the caller alone owns (and frees) what it caught.
  void fail_all(std::deque<std::unique_ptr<job>> jobs,
                const std::function<std::exception_ptr()>& make) {
    for (auto& j : jobs) settle_failed(*j, make());
  }

  /// A job's last call to its sink; the callers who watch for news without sleeping see it.
  void finished(job_sink& sink, job& j) {
    sink.done(j);
    if (cfg_.delivered != nullptr) cfg_.delivered->fetch_add(1, std::memory_order_release);
    if (cfg_.spares != nullptr) cfg_.spares->give(std::move(j.payload));
  }

  void settle_failed(job& j, std::exception_ptr error) {
    if (j.sink == nullptr) return;
    job_sink* sink = j.sink;
    j.sink = nullptr;
    sink->failed(j, std::move(error));
    finished(*sink, j);
  }

  void stop_worker(slot& s, stop_reason why, std::string message) {
    if (s.stopping != stop_reason::none) return;
    s.stopping = why;
    s.stop_message = std::move(message);
    os::signal_process(s.watch, s.pid, os::kill_signal);
  }

  // --- sending -----------------------------------------------------------------------------

  /// How many jobs a worker may hold, the one it runs included. A job sent to a worker cannot be
  /// taken back, so a worker holds only what it will start soon: about a millisecond of work
  /// queued behind the running job, so a worker never waits for its next short job; one job
  /// behind a job of a few milliseconds; none behind a long one, nor while no job's cost is
  /// known yet (a first job that runs for seconds holds nothing that an idle worker could run).
  std::size_t depth() const noexcept {
    if (job_ns_ == 0 || job_ns_ >= long_job_ns) return 1;
    return std::clamp<std::size_t>(static_cast<std::size_t>(queue_budget_ns / job_ns_) + 1, 2, 64);
  }

  /// Jobs a worker holds that it will run (not withdrawn).
  static std::size_t live_jobs(const slot& s) noexcept {
    return static_cast<std::size_t>(std::count_if(s.in_flight.begin(), s.in_flight.end(),
                                                  [](const auto& j) { return !j->withdrawn; }));
  }

  /// How long until a worker could start one more job: the time left of its running job, then
  /// the typical time of each job queued behind it. A running job past the typical time is taken
  /// to need as long again as it has run so far (a job that is slow now tends to stay slow):
  /// so a worker stuck in a long job soon gets nothing queued behind it, while the others do.
  std::uint64_t busy_for_ns(const slot& s, std::uint64_t now) const noexcept {
    const std::size_t live = live_jobs(s);
    if (live == 0) return 0;
    if (s.in_flight.front()->withdrawn) return live * job_ns_;
    const std::uint64_t ran = now > s.front_since_ns ? now - s.front_since_ns : 0;
    const std::uint64_t left = ran < job_ns_ ? job_ns_ - ran : ran;
    return left + (live - 1) * job_ns_;
  }

  /// A worker that could run a job now, and none is waiting to be sent: it takes back from the
  /// busiest other worker (the one holding most jobs) half the jobs queued there that have not
  /// started, for dispatch() to give out again. So a worker never idles while another holds
  /// queued work, whatever the costs guessed when the work was sent. A worker that has not said
  /// hello yet has all its jobs queued; a started one keeps the job it runs.
  void rebalance() {
    for (auto& thief : slots_) {
      if (thief.pid < 0 || !thief.greeted || thief.stopping != stop_reason::none ||
          retiring(thief) || live_jobs(thief) != 0)
        continue;
      slot* victim = nullptr;
      std::size_t most = 0;
      for (auto& v : slots_) {
        if (&v == &thief || v.pid < 0 || !v.shared || retiring(v)) continue;
        const std::size_t live = live_jobs(v);
        const std::size_t queued = v.greeted ? (live > 0 ? live - 1 : 0) : live;
        if (queued > most) {
          most = queued;
          victim = &v;
        }
      }
      if (victim == nullptr) return;  // nothing queued anywhere
      std::size_t take = (most + 1) / 2;
      std::deque<std::unique_ptr<job>> back;
      for (auto it = victim->in_flight.rbegin(); it != victim->in_flight.rend() && take > 0; ++it) {
        std::unique_ptr<job>& j = *it;
        if (j->withdrawn) continue;
        if (!victim->shared->control().withdraw(j->seq)) break;  // started: so did those before
        --take;
        auto mark = std::make_unique<job>();
        mark->id = j->id;
        mark->seq = j->seq;
        mark->sent_ns = j->sent_ns;
        mark->withdrawn = true;
        std::unique_ptr<job> taken = std::exchange(j, std::move(mark));
        if (taken->sink != nullptr) back.push_front(std::move(taken));
      }
      // Ahead of the rest, in their order: they were due before anything still pending.
      for (auto it = back.rbegin(); it != back.rend(); ++it) {
        (*it)->id = ++last_id_;
        pending_.push_front(std::move(*it));
      }
      if (!pending_.empty()) return;  // dispatch() gives them out, then looks again
    }
  }

  void dispatch() {
    if (pending_.empty()) rebalance();
    if (pending_.empty()) return;
    const std::size_t limit = depth();
    const std::uint64_t now = os::monotonic_ns();
    const std::uint64_t round = ++dispatch_round_;
    // With no worker running, an empty slot is tried at once, whenever it last failed.
    const bool none_running = running_workers() == 0;
    while (!pending_.empty()) {
      // The worker that could start a job soonest, if within queue_budget_ns (busy_for_ns), and
      // holding fewer than depth() jobs; a slot without a worker counts as idle but loses ties,
      // so a call of one item starts one worker.
      slot* best = nullptr;
      std::uint64_t best_busy = 0;
      for (auto& s : slots_) {
        if (s.pid >= 0 && (s.stopping != stop_reason::none || retiring(s))) continue;
        if (s.pid < 0 && s.start_failed_ns != 0 &&
            (s.failed_round == round ||
             (!none_running && now - s.start_failed_ns < start_retry_ns)))
          continue;
        if (live_jobs(s) >= limit || s.in_flight.size() + 1 >= control_block::claim_slots) continue;
        const std::uint64_t busy = busy_for_ns(s, now);
        if (busy > queue_budget_ns) continue;
        if (best == nullptr || busy < best_busy ||
            (busy == best_busy && best->pid < 0 && s.pid >= 0)) {
          best = &s;
          best_busy = busy;
        }
      }
      if (best == nullptr) break;
      if (best->pid < 0 && driving_) {  // only the loop starts workers
        needs_loop_ = true;
        break;
      }
      if (best->pid < 0 && !try_launch(*best)) {
        best->failed_round = round;
        continue;
      }
      std::unique_ptr<job> j = std::move(pending_.front());
      pending_.pop_front();
      if (j->sink == nullptr) continue;
      if (best->out_sent == best->out.size()) {
        best->out.clear();
        best->out_sent = 0;
      }
      const std::size_t mark = best->out.size();
      best->shared->control().offer(best->sent + 1);  // before the worker can see the task
      try {
        if (!send_task(*best, *j)) {  // its ring is full: the job waits for the next round
          pending_.push_front(std::move(j));
          break;
        }
      } catch (...) {  // no memory for the frame: this job fails, the worker goes on
        best->out.resize(mark);
        if (sending_only_) {  // no sink may be called here: the loop fails it
          pending_.push_front(std::move(j));
          needs_loop_ = true;
          break;
        }
        settle_failed(*j, std::current_exception());
        continue;
      }
      j->seq = ++best->sent;
      j->sent_ns = now;
      if (driving_ && j->timeout.count() > 0) needs_loop_ = true;  // its deadline is the loop's
      if (best->in_flight.empty()) best->front_since_ns = now;
      best->in_flight.push_back(std::move(j));
    }
    ring_task_bells();
    // Jobs wait, and no slot has a worker: every start failed just now. They fail rather than
    // wait for a worker that may never come; a later call tries the slots again.
    if (!pending_.empty() &&
        std::none_of(slots_.begin(), slots_.end(), [](const slot& s) { return s.pid >= 0; })) {
      if (driving_) {
        needs_loop_ = true;
        return;
      }
      const std::string why = last_start_error_;
      fail_pending([&why] { return std::make_exception_ptr(spawn_error(why)); });
    }
  }

  /// Puts a task where its worker reads it: its ring, or, too large for the ring (or when the
  /// ring is full), a mark in the ring and the task on the socket. Without rings, the socket.
  /// False when not even the mark fits now (the worker is behind: the task waits).
  static bool send_task(slot& s, const job& j) {
    if (s.rings && s.tasks.put(frame_type::task, frame_flags::none, j.id, j.payload, j.borrowed))
      return true;
    const std::size_t mark = s.out.size();
    append_frame(s.out, frame_type::task, frame_flags::none, j.id, j.payload, j.borrowed);
    if (!s.rings) return true;
    if (s.tasks.put(frame_type::task, frame_flags::payload_on_channel, j.id, {})) return true;
    s.out.resize(mark);
    return false;
  }

  /// Publishes the tasks put in each ring, and wakes the workers that sleep (a doorbell frame,
  /// written with the slot's other frames by flush_all).
  void ring_task_bells() {
    for (auto& s : slots_) {
      if (s.pid < 0 || !s.rings || !s.tasks.uncommitted()) continue;
      s.tasks.commit();
      if (s.shared->control().worker_bell.must_ring()) {
        if (s.out_sent == s.out.size()) {
          s.out.clear();
          s.out_sent = 0;
        }
        const header_bytes bell = encode_header(frame_type::doorbell, frame_flags::none, 0, 0);
        s.out.insert(s.out.end(), bell.begin(), bell.end());
      }
    }
  }

  bool results_ready() const noexcept {
    for (const auto& s : slots_)
      if (s.pid >= 0 && s.rings && s.results.ready()) return true;
    return false;
  }

  /// Whether news may come within a spin: a worker runs a job, and jobs are short; or, for a
  /// loop with callers (`callers`), a result was just delivered (its caller may post again).
  bool spin_worth_it(bool callers) const noexcept {
    if (job_ns_ > spin_job_ns) return false;
    if (callers && os::monotonic_ns() - last_result_ns_ < engine_spin_ns) return true;
    for (const auto& s : slots_)
      if (s.pid >= 0 && s.rings && s.greeted && live_jobs(s) > 0) return true;
    return false;
  }

  bool retiring(const slot& s) const noexcept {
    return cfg_.max_tasks_per_child != 0 && s.sent >= cfg_.max_tasks_per_child;
  }

  /// Writes what each worker has waiting; true when a worker was found gone meanwhile.
  bool flush_all() {
    bool ended = false;
    for (auto& s : slots_) {
      if (s.pid >= 0 && s.out_sent < s.out.size() && !flush(s)) {
        if (driving_) {  // the worker is ending: the loop sees to it
          needs_loop_ = true;
          continue;
        }
        end_worker(s);
        ended = true;
      }
      // A driver does not wait for the socket to take the rest: the loop, watching for it.
      if (driving_ && s.pid >= 0 && s.out_sent < s.out.size()) needs_loop_ = true;
    }
    return ended;
  }

  bool flush(slot& s) {
    while (s.out_sent < s.out.size()) {
      const std::ptrdiff_t n =
          s.channel.write_some(s.out.data() + s.out_sent, s.out.size() - s.out_sent);
      if (n < 0) return false;
      if (n == 0) return true;
      s.out_sent += static_cast<std::size_t>(n);
    }
    s.out.clear();
    s.out_sent = 0;
    return true;
  }

  // --- receiving -----------------------------------------------------------------------------

  void receive(slot& s, bool draining = false) {
    if (incoming_.empty()) incoming_.resize(std::size_t{256} << 10);
    for (;;) {
      const std::ptrdiff_t n = s.channel.read_some(incoming_.data(), incoming_.size());
      if (n == -2) break;  // nothing more now
      if (n <= 0) {        // end of stream: the worker is ending
        try {
          s.reader->finish();
        } catch (const parallel::error& e) {
          if (s.stopping == stop_reason::none) s.stopping = stop_reason::protocol;
          s.stop_message = e.what();
        }
        handle_frames(s);
        if (!draining && s.pid >= 0) end_worker(s);
        return;
      }
      try {
        s.reader->feed(std::span(incoming_.data(), static_cast<std::size_t>(n)));
      } catch (...) {  // no memory for a result's bytes
        drop_stream(s, std::current_exception());
        return;
      }
      if (!handle_frames(s)) return;
      // A short read means the socket is drained for now (poll says when more comes); saves a
      // read that would only say EAGAIN. Draining a dead worker reads on to the end.
      if (!draining && static_cast<std::size_t>(n) < incoming_.size()) break;
    }
  }

  /// The caller could not take a result's bytes (out of memory): that result's job fails with
  /// the error. The worker's stream cannot go on, so the worker is replaced, and its other jobs
  /// go to the queue again.
  void drop_stream(slot& s, std::exception_ptr error) {
    (void)handle_frames(s);  // the frames that arrived whole still count
    if (s.pid < 0 || s.stopping != stop_reason::none) return;
    // The failed bytes belong to the last result whose header was read.
    const auto at = std::find_if(s.in_flight.begin(), s.in_flight.end(),
                                 [&s](const auto& j) { return j->id == s.last_result_id; });
    if (at != s.in_flight.end()) {
      std::unique_ptr<job> j = std::move(*at);
      s.in_flight.erase(at);
      settle_failed(*j, std::move(error));
    }
    stop_worker(s, stop_reason::replace, {});
  }

  // Returns false when the worker was stopped (a protocol error, or its stream was dropped).
  bool handle_frames(slot& s) {
    for (;;) {
      if (s.pid < 0 || s.stopping == stop_reason::protocol || s.stopping == stop_reason::replace)
        return false;
      std::optional<frame> f;
      try {
        f = s.reader->next();
        if (!f) return true;
        if (f->type == frame_type::doorbell) continue;   // it woke the loop: the rings are read
        if (s.rings && f->type == frame_type::result) {  // its mark in the ring says when
          s.channel_results.push_back(std::move(*f));
          continue;
        }
        if (f->type == frame_type::result) --s.results_parsed;
        handle(s, f->type, f->flags, f->task_id, f->payload);
        if (f->type == frame_type::result && retiring(s) && s.in_flight.empty()) {
          if (driving_) {  // the loop retires it (retire_finished)
            needs_loop_ = true;
            return true;
          }
          retire(s);
        }
      } catch (const std::exception& e) {
        stop_worker(s, stop_reason::protocol, e.what());
        return false;
      }
    }
  }

  /// Reads the results of the ring: each frame is handled where it lies, then given back. A mark
  /// (payload_on_channel) stands for the next result that came by the socket; when that has not
  /// all been read yet, the rest waits for the next round.
  void drain(slot& s) {
    while (s.pid >= 0 && s.rings && s.stopping != stop_reason::protocol &&
           s.stopping != stop_reason::replace) {
      try {
        const std::optional<frame_ring::record> r = s.results.peek(default_max_payload);
        if (!r) return;
        if (r->header.type != frame_type::result)
          wire::protocol_error(std::string("a ") + to_string(r->header.type) +
                               " frame in a worker's result ring");
        if (has_flag(r->header.flags, frame_flags::payload_on_channel)) {
          // The worker wrote the result whole to the socket before this mark: it is there.
          if (s.channel_results.empty()) receive(s, /*draining=*/true);
          if (s.pid < 0 || s.channel_results.empty() || s.stopping == stop_reason::protocol ||
              s.stopping == stop_reason::replace)
            return;
          const frame f = std::move(s.channel_results.front());
          s.channel_results.pop_front();
          if (f.task_id != r->header.task_id)
            wire::protocol_error("a result's mark in the ring names task " +
                                 std::to_string(r->header.task_id) + ", the socket brought " +
                                 std::to_string(f.task_id));
          handle(s, f.type, f.flags, f.task_id, f.payload);
        } else {
          handle(s, r->header.type, r->header.flags, r->header.task_id, r->payload);
        }
        s.results.consume(*r);
        ++handled_;
      } catch (const std::exception& e) {
        stop_worker(s, stop_reason::protocol, e.what());
        return;
      }
      if (retiring(s) && s.in_flight.empty()) {
        if (driving_) {  // the loop retires it (retire_finished)
          needs_loop_ = true;
          return;
        }
        retire(s);
        return;
      }
      // The worker (or another) may now have room: give out waiting jobs before the next
      // result is decoded, which can take long (a large result): a worker never waits for the
      // decoding of another's results.
      if (!pending_.empty()) {
        dispatch();
        if (flush_all()) return;  // a worker ended: the next round sees to it
      }
    }
  }

  void handle(slot& s, frame_type type, frame_flags flags, std::uint64_t task_id,
              std::span<const std::byte> payload) {
    if (type == frame_type::hello) {
      decoder in(payload);
      (void)in.read<std::uint64_t>();
      const code_location theirs = decode_location(in);
      const bool ready = in.read<std::uint8_t>() != 0;
      if (!(theirs == anchor_location())) {
        s.startup_error =
            "parallel: a worker process runs a different executable than its caller (handshake: "
            "the library's anchor function is at a different offset); workers must run this "
            "very build of the program";
        stop_worker(s, stop_reason::protocol, s.startup_error);
        return;
      }
      if (!s.alive) s.alive_ns = os::monotonic_ns();
      s.alive = true;     // the handshake timer stops: it answered
      s.greeted = ready;  // with an initializer, ready once that has run
      if (ready) {
        started_well_ = true;
        early_restarts_ = 0;
      }
      return;
    }
    if (type == frame_type::error) {
      // The worker cannot start (its initializer threw, after the hello): it ends next, and its
      // jobs fail with this message rather than going to another worker that would fail alike.
      decoder in(payload);
      s.startup_error = in.read<std::string>();
      s.greeted = false;
      return;
    }
    if (type != frame_type::result) {
      wire::protocol_error(std::string("a worker sent a ") + to_string(type) + " frame");
    }
    if (!s.greeted) {
      // A result in the ring may be read before the hello that the worker wrote to the socket
      // first: read the socket now (the hello is there).
      if (s.rings) receive(s, /*draining=*/true);
      if (!s.greeted) wire::protocol_error("a worker sent a result before its handshake");
    }
    if (s.in_flight.empty() || s.in_flight.front()->id != task_id) {
      wire::protocol_error("a worker sent the result of task " + std::to_string(task_id) +
                           ", which it was not running");
    }
    if (has_flag(flags, frame_flags::withdrawn) != s.in_flight.front()->withdrawn) {
      wire::protocol_error(std::string("a worker ") +
                           (s.in_flight.front()->withdrawn ? "ran" : "skipped") + " task " +
                           std::to_string(task_id) + ", which was " +
                           (s.in_flight.front()->withdrawn ? "withdrawn" : "not withdrawn"));
    }
    std::unique_ptr<job> j = std::move(s.in_flight.front());
    s.in_flight.pop_front();
    s.front_since_ns = os::monotonic_ns();  // the next job, if any, began about now
    if (j->withdrawn) return;

    std::string failure;
    try {
      settle(payload, *j);
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (...) {
      failure = "parallel: protocol error: a result could not be read";
    }
    if (!failure.empty()) {
      // Its results cannot be trusted; the worker is stopped by the caller of handle().
      settle_failed(*j, std::make_exception_ptr(parallel::error(failure)));
      throw parallel::error(failure);
    }
    // max_tasks_per_child: when this worker has done its share, the caller of handle() retires
    // it once the frame is given back (a fresh one takes its place in the next round: a start
    // that fails must not read as this worker's protocol error).
  }

  // Results come in the order the tasks were sent; headers parsed ahead of the frames handled
  // so far belong to the jobs after those.
  static void check_header(slot& s, const frame_header& h) {
    if (h.type != frame_type::result) return;
    s.last_result_id = h.task_id;
    if (s.rings) {  // a result too large for the ring: any of the jobs in flight
      if (std::none_of(s.in_flight.begin(), s.in_flight.end(),
                       [&h](const auto& j) { return j->id == h.task_id; }))
        wire::protocol_error("a worker sent the result of task " + std::to_string(h.task_id) +
                             ", which it was not running");
      return;
    }
    const std::size_t position = s.results_parsed;
    if (position >= s.in_flight.size() || s.in_flight[position]->id != h.task_id) {
      wire::protocol_error("a worker sent the result of task " + std::to_string(h.task_id) +
                           ", which it was not running");
    }
    ++s.results_parsed;
  }

  // A result frame for job j: results to the sink, then its failure, if any.
  void settle(std::span<const std::byte> bytes, job& j) {
    decoder in(bytes);
    const auto took = in.read<std::uint64_t>();
    const auto k = in.read<std::uint64_t>();
    if (k > j.count) {
      wire::protocol_error("a worker sent " + std::to_string(k) + " results for a task of " +
                           std::to_string(j.count) + " items");
    }
    job_ns_ = job_ns_ == 0 ? std::max<std::uint64_t>(took, 1) : (3 * job_ns_ + took) / 4 + 1;
    job_sink* sink = j.sink;
    if (sink == nullptr) return;  // cancelled: the bytes are dropped
    last_result_ns_ = os::monotonic_ns();
    std::exception_ptr decode_error;
    try {
      sink->results(j, in, k, took);
    } catch (...) {
      decode_error = std::current_exception();
    }
    if (decode_error) {
      // A result that fails to decode (a codec threw) fails its own job; the frames around it
      // are intact, so the worker and the other jobs go on.
      j.sink = nullptr;
      sink->failed(j, std::move(decode_error));
      finished(*sink, j);
      return;
    }
    std::exception_ptr error = read_task_failure(in);
    if (error) sink->failed(j, std::move(error));
    j.sink = nullptr;
    finished(*sink, j);
  }

  // --- timeouts ---------------------------------------------------------------------------------
  // Deadlines, each computed the same way by check_timeouts() (has it passed?) and
  // next_deadline_ms() (how long may the loop sleep?): a worker's handshake, its becoming ready
  // (the pool's initializer), and the item a worker runs. The loop sleeps until the nearest
  // one; nothing here polls.

  static constexpr std::uint64_t ns_per_ms = 1'000'000;

  /// When a worker that answered but is not ready is too late: start_timeout after its hello,
  /// or sooner when a job with a timeout of its own waits for it (that job's timeout after it
  /// was given to the worker, or after the hello when it came first). 0 = never.
  struct start_limit {
    std::uint64_t at_ns = 0;
    std::uint64_t limit_ms = 0;
    bool from_call = false;  // the call's options.timeout, not the pool's start_timeout
  };

  start_limit start_deadline(const slot& s) const noexcept {
    start_limit best;
    if (cfg_.start_timeout.count() > 0) {
      best.limit_ms = static_cast<std::uint64_t>(cfg_.start_timeout.count());
      best.at_ns = s.alive_ns + best.limit_ms * ns_per_ms;
    }
    for (const auto& j : s.in_flight) {
      if (j->timeout.count() <= 0 || j->sink == nullptr) continue;
      const auto limit = static_cast<std::uint64_t>(j->timeout.count());
      const std::uint64_t at = std::max(s.alive_ns, j->sent_ns) + limit * ns_per_ms;
      if (best.at_ns == 0 || at < best.at_ns) best = {at, limit, true};
    }
    return best;
  }

  void check_timeouts() {
    const std::uint64_t now = os::monotonic_ns();
    for (auto& s : slots_) {
      if (s.pid < 0 || s.stopping != stop_reason::none) continue;
      if (!s.alive) {
        if (cfg_.handshake_timeout.count() > 0 &&
            now - s.launched_ns >
                static_cast<std::uint64_t>(cfg_.handshake_timeout.count()) * ns_per_ms)
          stop_worker(s, stop_reason::timeout, {});
        continue;
      }
      if (!s.greeted) {
        const start_limit limit = start_deadline(s);
        if (limit.at_ns != 0 && now >= limit.at_ns) {
          stop_worker(
              s, stop_reason::start_timeout,
              "parallel: a worker process (pid " + std::to_string(s.pid) +
                  ") was not ready within " + std::to_string(limit.limit_ms) +
                  " ms: the pool's initializer had not returned; it was stopped. " +
                  (limit.from_call ? "The call's options.timeout bounds the wait for a worker too: "
                                     "make the initializer return sooner, or give the call a "
                                     "longer timeout"
                                   : "Make the initializer return sooner, or give the pool a "
                                     "longer start_timeout"));
        }
        continue;
      }
      const job* running = running_job(s);
      if (running == nullptr || running->timeout.count() <= 0) continue;
      const std::uint64_t since = s.shared->control().started_ns.load(std::memory_order_relaxed);
      const auto limit = static_cast<std::uint64_t>(running->timeout.count()) * ns_per_ms;
      if (now > since && now - since > limit) stop_worker(s, stop_reason::timeout, {});
    }
  }

  const job* running_job(const slot& s) const noexcept {
    const std::uint64_t started = s.shared->control().started_seq.load(std::memory_order_acquire);
    for (const auto& j : s.in_flight)
      if (j->seq == started) return j.get();
    return nullptr;
  }

  int next_deadline_ms() const noexcept {
    std::uint64_t best = std::numeric_limits<std::uint64_t>::max();  // ns from now
    const std::uint64_t now = os::monotonic_ns();
    const auto until = [&](std::uint64_t at_ns) {
      best = std::min(best, at_ns > now ? at_ns - now : 0);
    };
    for (const auto& s : slots_) {
      if (s.pid < 0 || s.stopping != stop_reason::none) continue;
      if (!s.alive) {
        if (cfg_.handshake_timeout.count() > 0)
          until(s.launched_ns +
                static_cast<std::uint64_t>(cfg_.handshake_timeout.count()) * ns_per_ms);
        continue;
      }
      if (!s.greeted) {
        if (const start_limit limit = start_deadline(s); limit.at_ns != 0) until(limit.at_ns);
        continue;
      }
      const job* running = running_job(s);
      for (const auto& j : s.in_flight) {
        if (j->timeout.count() <= 0 || j->sink == nullptr) continue;
        const auto limit = static_cast<std::uint64_t>(j->timeout.count()) * ns_per_ms;
        if (j.get() == running) {
          until(s.shared->control().started_ns.load(std::memory_order_relaxed) + limit);
        } else {
          // Queued behind another: it may start at any moment without a word, so look again
          // no later than one timeout from now (it is then seen running, or not yet).
          until(now + limit);
        }
      }
    }
    for (const auto& r : retired_)
      if (!r.killed) until(r.deadline_ns);
    if (best == std::numeric_limits<std::uint64_t>::max()) return std::numeric_limits<int>::max();
    // Rounded up: 300 us left must not become a wait of 0 ms, which would spin.
    return static_cast<int>(std::min<std::uint64_t>((best + ns_per_ms - 1) / ns_per_ms, 1u << 30));
  }

  config cfg_;
  starter start_;
  std::vector<slot> slots_;
  std::deque<std::unique_ptr<job>> pending_;
  std::vector<retired> retired_;
  std::string last_start_cause_;  // what the last failed start said
  std::string last_start_error_;  // the error that names it, for the jobs that fail
  std::uint64_t dispatch_round_ = 0;
  std::uint64_t last_id_ = 0;
  std::uint64_t job_ns_ = 0;
  std::uint64_t last_result_ns_ = 0;  // when a result was last given to its sink
  std::uint64_t handled_ = 0;         // result frames read from the rings
  bool driving_ = false;              // a caller drives (begin_driving)
  bool sending_only_ = false;         // ... and calls no sink (send_round)
  bool needs_loop_ = false;           // it left the loop something to do
  static constexpr int max_early_restarts = 3;
  bool started_well_ = false;  // some worker became ready
  int early_restarts_ = 0;     // workers killed before they were ready, in a row
  struct owner {
    std::size_t slot;          // no_slot: the wake-up
    std::uint64_t generation;  // of the worker the entry was for
    bool watch;                // its process watch, not its channel
  };
  os::wait_set waits_;
  std::vector<owner> owners_;
  std::vector<std::byte> incoming_;
};

}  // namespace parallel::detail::ipc
