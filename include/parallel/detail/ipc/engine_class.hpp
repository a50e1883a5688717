// ipc::engine's class: its members, declared; engine.hpp says what it is and includes the files
// that define them.
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
#include "engine_slot.hpp"
#include "frame.hpp"
#include "frame_reader.hpp"
#include "identity.hpp"
#include "job.hpp"
#include "job_core.hpp"
#include "job_mailbox.hpp"
#include "payload_cache.hpp"
#include "worker.hpp"

namespace parallel::detail::ipc {

class engine {
 public:
  /// Starts a worker process; returns its pid. `child_channel` is the worker's end of the
  /// channel, `shared` its arena. A fork-based starter runs worker_main in the child.
  using starter = std::function<os::pid_type(os::native_handle child_channel, arena& shared)>;

  /// What the engine is asked to run (engine_slot.hpp).
  using config = engine_config;

  /// With keep_workers, starts every worker now; when one cannot be started, those already
  /// started are ended and reaped and the constructor throws spawn_error.
  engine(config cfg, starter start)
      : cfg_(std::move(cfg)),
        start_(std::move(start)),
        slots_(cfg_.workers),
        core_(cfg_.workers, {.delivered = cfg_.delivered,
                             .spares = cfg_.spares,
                             .pack_ns = pack_job_ns,
                             .unpack_ns = unpack_job_ns}) {
    for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i].jobs = &core_.at(i);
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
  /// so are idle ones that have not ended after end_grace (stopped, frozen).
  ~engine() { shut_down(); }

  std::size_t size() const noexcept { return slots_.size(); }

  /// Starts a worker in every empty slot now, not when work comes. Per-call fork does so before
  /// the call's result memory exists: the caller's writes to it are then no copy-on-write
  /// faults. A start that fails leaves its slot to dispatch(), as a start on demand would.
  void start_workers() {
    for (auto& s : slots_)
      if (s.pid < 0) (void)try_launch(s);
  }

  void post(std::unique_ptr<job> j) { core_.post(std::move(j)); }

  /// Drops the sink's jobs that were not sent, withdraws those sent that have not started, and
  /// forgets the outcome of those running.
  void cancel(const job_sink* sink) { core_.cancel(sink, take_back()); }

  /// Takes the sink's job back (future::cancel): out of the queue if it was not sent yet, or out
  /// of its worker's queue if the worker has not started it (control_block::withdraw). True
  /// when it was taken back: its sink is then never called. A job that started stays.
  bool withdraw(const job_sink* sink) { return core_.withdraw(sink, take_back()); }

  /// job_mailbox's withdrawal (future::cancel): withdraw(), and with `kill`, a job its worker
  /// is running now is stopped with that worker (killed and replaced; the jobs queued behind
  /// it go back to the queue). Its sink is then never called.
  cancel_outcome withdraw_job(const job_sink* sink, bool kill);

  /// Jobs posted and not finished whose outcome someone still waits for (a cancelled job
  /// still running in a worker does not count: destroying the engine kills that worker).
  std::size_t outstanding() const noexcept { return core_.outstanding(); }
  std::size_t pending() const noexcept { return core_.pending(); }

  /// Fails every job not yet sent (the engine could not start a worker for them), each with
  /// an exception of its own from `make`.
  void fail_pending(const std::function<std::exception_ptr()>& make) { core_.fail_pending(make); }

  /// For a loop that cannot go on as it is (an error it cannot place): every job fails with an
  /// exception of its own from `make`, and the workers are replaced, so nothing waits for an
  /// outcome that would never come.
  void fail_everything(const std::function<std::exception_ptr()>& make) {
    core_.fail_everything(make);
    for (auto& s : slots_)
      if (s.pid >= 0) stop_worker(s, stop_reason::replace, {});
  }

  /// Nanoseconds a job took in its worker, on average lately (0 before the first result).
  std::uint64_t typical_job_ns() const noexcept { return core_.typical_job_ns(); }

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

  int prepare_wait(int wait_ms, const os::wakeup* wake, mailbox_bell* mail);

  int wait_now(int timeout) { return waits_.wait(timeout); }

  bool finish_wait(int ready, mailbox_bell* mail);

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
  void send_round();

  /// One round of a driving caller: sends what can be sent, handles what the rings hold.
  /// Returns the number of results handled.
  std::uint64_t drive_round();

  /// The caller lets go: from now on a worker rings the socket after a result (the loop may be
  /// asleep), and what the rings held before that is handled now. Jobs packed behind a worker
  /// while another idles are watched by the loop from then on (needs_loop()).
  void end_driving();

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
  bool worth_driving() const noexcept;

 private:
  static constexpr std::size_t no_slot = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t retired_slot = no_slot - 1;
  /// After a worker could not be started, its slot is tried again no sooner than this, unless
  /// no worker is left (then at once: the jobs would otherwise fail).
  static constexpr std::uint64_t start_retry_ns = 100'000'000;
  /// Whether slot `s`, empty since a start failed there, may be tried again at `now`.
  static bool start_retry_due(const worker_slot& s, std::uint64_t now) noexcept {
    return s.start_failed_ns != 0 && now - s.start_failed_ns >= start_retry_ns;
  }
  /// Before it sleeps, the engine watches the result rings this long when results are due soon
  /// (spin_worth_it): short jobs then cost no system call on the caller's side.
  static constexpr std::uint64_t engine_spin_ns = 20'000;
  /// Jobs longer than this (lately, on average) are not waited for by spinning.
  static constexpr std::uint64_t spin_job_ns = 200'000;
  /// Shorter jobs go behind a busy worker's work while it would start them within this long
  /// (job_core::config::pack_ns): about what waking an idle worker costs here, socket and
  /// process switch (rebalance() takes them back if that worker's job runs long).
  static constexpr std::uint64_t pack_job_ns = 20'000;
  /// And stay there until their worker is this late with them (job_core::config::unpack_ns).
  static constexpr std::uint64_t unpack_job_ns = 100'000;
  using stop_reason = worker_stop;
  using slot = worker_slot;
  using retired = retired_worker;

  /// How the core takes a job back from worker i before it starts it (control_block::withdraw).
  struct take_back_fn {
    engine* self;
    bool operator()(std::size_t i, const job& j) const {
      const slot& s = self->slots_[i];
      return s.shared != nullptr && s.shared->control().withdraw(j.seq);
    }
  };
  take_back_fn take_back() noexcept { return {this}; }

  std::size_t index_of(const slot& s) const noexcept {
    return static_cast<std::size_t>(&s - slots_.data());
  }

  // --- starting and ending workers ------------------------------------------------------------

  /// Starts a worker in `s`, or throws and leaves `s` empty. Whatever can fail is made before
  /// the process exists, so a failure never leaves a process behind.
  void launch(slot& s);

  /// launch(), with a failure recorded instead of thrown: the slot stays empty.
  bool try_launch(slot& s);

  static constexpr const char* limits_advice =
      "check the limits on processes (ulimit -u), open files (ulimit -n) and memory (ulimit -v), "
      "or use fewer workers";

  /// True when a start's error already says what to do: which limit to raise (the OS layer's
  /// EMFILE and RLIMIT_AS messages do), or to call spawn_main (a forkserver that never answered).
  static bool gives_advice(const std::string& why);

  std::string start_failure_message(const std::string& why) const;

  std::size_t running_workers() const noexcept;

  /// Tells every worker whether someone on the caller's side watches its result ring (the loop
  /// spinning, or a driver): if not, it rings the socket after each result (ring.hpp).
  void callers_watch(bool watching) noexcept;

  /// Retires the workers that did their share (max_tasks_per_child) while a caller drove.
  void retire_finished();

  /// Starts the workers that left their slot in good standing (they died or retired), and tries
  /// again a slot whose start failed, once due (retry_due_ns); dispatch() tries it too when a
  /// job comes for it.
  void replenish();
  /// When to try again a slot whose start failed (0: never now): start_retry_ns after the
  /// failure, while jobs wait for a worker (not sent, or queued behind a running one). The loop
  /// wakes for it: a worker that was refused for a while is started once it can be, not at
  /// the next unrelated event (with a long job running, that may be minutes away).
  std::uint64_t retry_due_ns() const noexcept;

  /// Ends every worker and waits (bounded) for each: channels close first, so idle workers
  /// end on their own; busy ones are killed; any still there after end_grace is killed.
  void shut_down() noexcept;

  /// Waits until `pid` ends, at most until `deadline_ns`, kills it if it is still there, and
  /// reaps it.
  worker_end finish(os::pid_type pid, const os::process_watch_handle& watch,
                    std::uint64_t deadline_ns) noexcept;

  /// max_tasks_per_child: the worker has done its share. Its channel closes (it ends on its
  /// own), it is reaped when it has ended (collect_retired), and a fresh one takes the slot.
  void retire(slot& s);

  void collect_retired();

  // The worker ended, or must: collect what it sent, reap it, settle its jobs, and replace it.
  void end_worker(slot& s);

  /// Whether a worker that ended before it was ready is started again: only when it was ended
  /// by a signal (not an exit, an initializer's error or a handshake timeout), a worker of this
  /// engine has been ready before (the executable and the initializer work), and fewer than
  /// max_early_restarts such restarts came in a row. Otherwise what waits fails with
  /// spawn_error: no start loop.
  bool restart_after_early_death(const slot& s, int status);
  std::uint64_t end_grace_ns() const noexcept {
    return static_cast<std::uint64_t>(cfg_.end_grace.count()) * 1'000'000ull;
  }

  worker_end reap(os::pid_type pid);

  void stop_worker(slot& s, stop_reason why, std::string message);

  // --- sending -----------------------------------------------------------------------------

  /// A worker that could run a job now, and none is waiting to be sent: it takes back from the
  /// busiest other worker (the one holding most jobs) half the jobs queued there that have not
  /// started, for dispatch() to give out again. So a worker never idles while another holds
  /// queued work, whatever the costs guessed when the work was sent. A worker that has not said
  /// hello yet has all its jobs queued; a started one keeps the job it runs.
  void rebalance();

  void dispatch();

  /// Puts a task where its worker reads it: its ring, or, too large for the ring (or when the
  /// ring is full), a mark in the ring and the task on the socket. Without rings, the socket.
  /// False when not even the mark fits now (the worker is behind: the task waits).
  static bool send_task(slot& s, const job& j);

  /// Publishes the tasks put in each ring, and wakes the workers that sleep (a doorbell frame,
  /// written with the slot's other frames by flush_all).
  void ring_task_bells();

  bool results_ready() const noexcept;

  /// Whether news may come within a spin: a worker runs a job, and jobs are short; or, for a
  /// loop with callers (`callers`), a result was just delivered (its caller may post again).
  bool spin_worth_it(bool callers) const noexcept;

  bool retiring(const slot& s) const noexcept;

  /// Writes what each worker has waiting; true when a worker was found gone meanwhile.
  bool flush_all();

  bool flush(slot& s);

  // --- receiving -----------------------------------------------------------------------------

  void receive(slot& s, bool draining = false);

  /// The caller could not take a result's bytes (out of memory): that result's job fails with
  /// the error. The worker's stream cannot go on, so the worker is replaced, and its other jobs
  /// go to the queue again.
  void drop_stream(slot& s, std::exception_ptr error);

  // Returns false when the worker was stopped (a protocol error, or its stream was dropped).
  bool handle_frames(slot& s);

  /// Reads the results of the ring: each frame is handled where it lies, then given back. A mark
  /// (payload_on_channel) stands for the next result that came by the socket; when that has not
  /// all been read yet, the rest waits for the next round.
  void drain(slot& s);

  void handle(slot& s, frame_type type, frame_flags flags, std::uint64_t task_id,
              std::span<const std::byte> payload);

  // Results come in the order the tasks were sent; headers parsed ahead of the frames handled
  // so far belong to the jobs after those.
  static void check_header(slot& s, const frame_header& h);

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

  start_limit start_deadline(const slot& s) const noexcept;

  void check_timeouts();

  const job* running_job(const slot& s) const noexcept;

  int next_deadline_ms() const noexcept;

  /// When the loop should next look at short jobs packed behind a worker's work while another
  /// worker idles (job_core::moving_due_ns; 0: none): rebalance() moves them once they are late.
  std::uint64_t moving_due_ns() const noexcept;

  config cfg_;
  starter start_;
  std::vector<slot> slots_;
  job_core core_;  // the jobs: waiting, and in each worker's lane (slot::jobs)
  std::vector<retired> retired_;
  std::string last_start_cause_;  // what the last failed start said
  std::string last_start_error_;  // the error that names it, for the jobs that fail
  std::uint64_t dispatch_round_ = 0;
  std::uint64_t handled_ = 0;  // result frames read from the rings
  bool driving_ = false;       // a caller drives (begin_driving)
  bool sending_only_ = false;  // ... and calls no sink (send_round)
  bool needs_loop_ = false;    // it left the loop something to do
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
  // Where the sockets are read into: not zero-filled, so that only the bytes a read brings
  // touch its pages (a per-call engine's zeroed 256 KiB were 64 page faults a call).
  static constexpr std::size_t incoming_size = std::size_t{256} << 10;
  std::unique_ptr<std::byte[]> incoming_;
};

}  // namespace parallel::detail::ipc
