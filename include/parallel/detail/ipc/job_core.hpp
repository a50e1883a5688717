// The half of running jobs on workers that does not depend on how bytes travel: the queue of
// jobs not sent yet, the jobs each worker holds, which worker gets the next job, what a worker's
// loss does to its jobs, and how every outcome reaches its sink. Two transports use it:
// ipc::engine (worker processes, shared-memory rings and a socket each) and ranks::cluster (MPI
// ranks); they start and watch their workers and move the bytes, and tell the core what
// happened. One thread uses a core: the one that drives its transport.
//
// Dispatch is on demand: a worker holds the job it runs and only as much queued behind it as it
// will start within about a millisecond (depth(), least_busy()), so an idle worker never waits
// while another holds work it has not started.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "../futures/cancel_outcome.hpp"
#include "../process_platform.hpp"
#include "frame.hpp"
#include "job.hpp"
#include "payload_cache.hpp"

namespace parallel::detail::ipc {

/// One worker's share: the jobs it was given, oldest first, which it runs in that order.
struct lane {
  std::deque<std::unique_ptr<job>> in_flight;
  std::uint64_t front_since_ns = 0;  // when its first job in flight was given or began

  /// Jobs it will run (not withdrawn).
  std::size_t live() const noexcept {
    return static_cast<std::size_t>(std::count_if(in_flight.begin(), in_flight.end(),
                                                  [](const auto& j) { return !j->withdrawn; }));
  }
};

class job_core {
 public:
  /// A job this long (lately, on average) has no job queued behind it (depth()).
  static constexpr std::uint64_t long_job_ns = 1'000'000;
  /// About this much work waits in a worker behind its running job (depth(), least_busy()).
  static constexpr std::uint64_t queue_budget_ns = 1'000'000;
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

  struct config {
    /// Counts the jobs given to their sink's done() (for callers that watch it: pool_runner).
    std::atomic<std::uint64_t>* delivered = nullptr;
    /// Where a finished job leaves its payload buffer for the callers' next jobs (null: freed).
    payload_cache* spares = nullptr;
    /// Jobs a worker holds whatever their length: 2 for a transport that sees a result late
    /// (the MPI cluster polls, sleeping up to 1 ms): its workers' next job is already there.
    std::size_t min_depth = 1;
    /// A transport that can take back a job a worker has not started (the engine's rebalance)
    /// sets this: a job expected to take less (job::estimated_ns) goes behind a busy worker's
    /// short jobs while it would start within this long, rather than to an idle worker
    /// (least_busy(), worth_moving()). 0: never (an MPI rank cannot give a job back).
    std::uint64_t pack_ns = 0;
    /// How long a worker's packed jobs stay with it while it is later than their estimates say
    /// (worth_moving()): longer than pack_ns, since a worker merely late to start (descheduled
    /// for a few tens of microseconds) still runs them sooner than an idle one can be woken.
    std::uint64_t unpack_ns = 0;
  };

  explicit job_core(std::size_t workers) : lanes_(workers) {}
  job_core(std::size_t workers, config cfg) : lanes_(workers), cfg_(cfg) {}

  std::size_t workers() const noexcept { return lanes_.size(); }
  lane& at(std::size_t i) noexcept { return lanes_[i]; }
  const lane& at(std::size_t i) const noexcept { return lanes_[i]; }

  // --- the queue ------------------------------------------------------------------------------

  void post(std::unique_ptr<job> j) {
    j->id = ++last_id_;
    pending_.push_back(std::move(j));
  }

  std::size_t pending() const noexcept { return pending_.size(); }

  /// The next job to send, or null when none waits (cancelled ones are dropped on the way).
  /// It stays first in the queue until give_next() or fail_next().
  job* next() noexcept {
    while (!pending_.empty() && pending_.front()->sink == nullptr) pending_.pop_front();
    return pending_.empty() ? nullptr : pending_.front().get();
  }

  /// The next job was sent to worker i: it joins that worker's lane.
  job& give_next(std::size_t i, std::uint64_t now) {
    lane& l = lanes_[i];
    std::unique_ptr<job> j = std::move(pending_.front());
    pending_.pop_front();
    j->sent_ns = now;
    if (l.in_flight.empty()) l.front_since_ns = now;
    l.in_flight.push_back(std::move(j));
    return *l.in_flight.back();
  }

  /// The next job, out of the queue (a transport that runs it at once, not on a worker).
  std::unique_ptr<job> take_next() {
    std::unique_ptr<job> j = std::move(pending_.front());
    pending_.pop_front();
    return j;
  }

  /// The next job could not be sent (no memory for its frame): it fails with `error`.
  void fail_next(std::exception_ptr error) {
    std::unique_ptr<job> j = std::move(pending_.front());
    pending_.pop_front();
    fail(*j, std::move(error));
  }

  /// Jobs taken back from a worker go ahead of those waiting, in their order (they were due
  /// first); cancelled ones are dropped. `renumber`: they get new ids (their worker still holds
  /// a mark under the old one, and will answer it).
  void requeue(std::deque<std::unique_ptr<job>> jobs, bool renumber = false) {
    for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) {
      if ((*it)->sink == nullptr) continue;
      if (renumber) (*it)->id = ++last_id_;
      pending_.push_front(std::move(*it));
    }
  }

  /// Every job of worker i's lane, which is left empty.
  std::deque<std::unique_ptr<job>> take_lane(std::size_t i) {
    std::deque<std::unique_ptr<job>> jobs = std::move(lanes_[i].in_flight);
    lanes_[i].in_flight.clear();
    return jobs;
  }

  // --- outcomes -------------------------------------------------------------------------------

  /// The job worker i answered (task `task_id`): the first it holds, or the worker broke the
  /// protocol (thrown; the job stays). The next job, if any, began about `now`.
  std::unique_ptr<job> take_result(std::size_t i, std::uint64_t task_id, std::uint64_t now) {
    lane& l = lanes_[i];
    if (l.in_flight.empty() || l.in_flight.front()->id != task_id)
      wire::protocol_error("a worker sent the result of task " + std::to_string(task_id) +
                           ", which it was not running");
    std::unique_ptr<job> j = std::move(l.in_flight.front());
    l.in_flight.pop_front();
    l.front_since_ns = now;
    return j;
  }

  /// A result payload (worker.hpp's layout) for job j: its results to the sink, then its
  /// failure, if any (`where` ends that message: " (on MPI rank 2)"). A result that fails to
  /// decode (a codec threw) fails its own job only. Bytes that break the layout fail the job
  /// and are thrown as a protocol error: the worker that sent them is not to be trusted.
  void settle(job& j, std::span<const std::byte> bytes, const std::string& where = {}) {
    try {
      decoder in(bytes);
      const auto took = in.read<std::uint64_t>();
      const auto k = in.read<std::uint64_t>();
      if (k > j.count)
        wire::protocol_error("a worker sent " + std::to_string(k) + " results for a task of " +
                             std::to_string(j.count) + " items");
      job_ns_ = job_ns_ == 0 ? std::max<std::uint64_t>(took, 1) : (3 * job_ns_ + took) / 4 + 1;
      job_sink* sink = j.sink;
      if (sink == nullptr) return;  // cancelled: the bytes are dropped
      last_result_ns_ = os::monotonic_ns();
      try {
        sink->results(j, in, k, took);
      } catch (...) {
        fail(j, std::current_exception());
        return;
      }
      std::exception_ptr error = read_task_failure(in, where);
      j.sink = nullptr;
      if (error) sink->failed(j, std::move(error));
      finished(*sink, j);
    } catch (const std::exception& e) {
      fail(j, std::make_exception_ptr(parallel::error(e.what())));
      throw;
    }
  }

  /// A job's end without results: failed(), then done(); nothing when it was cancelled.
  void fail(job& j, std::exception_ptr error) {
    if (j.sink == nullptr) return;
    job_sink* sink = j.sink;
    j.sink = nullptr;
    sink->failed(j, std::move(error));
    finished(*sink, j);
  }

  /// Each job gets an exception object of its own, and the core keeps no reference to it: once
  /// done() wakes the caller, the caller alone owns (and frees) what it caught.
  void fail_all(std::deque<std::unique_ptr<job>> jobs,
                const std::function<std::exception_ptr()>& make) {
    for (auto& j : jobs) fail(*j, make());
  }

  /// Fails every job not sent yet (no worker is left to run them).
  void fail_pending(const std::function<std::exception_ptr()>& make) {
    std::deque<std::unique_ptr<job>> waiting = std::move(pending_);
    pending_.clear();
    fail_all(std::move(waiting), make);
  }

  /// Worker i is gone, or not to be used again: `culprit` (one of its jobs, or none) fails with
  /// `error`; the others, which it never finished, go back to the queue ahead of the rest. The
  /// error is moved to the culprit's sink: the caller that catches it must be its only owner
  /// (fail_all), so the transport keeps no copy.
  void lose(std::size_t i, const job* culprit, std::exception_ptr error) {
    std::deque<std::unique_ptr<job>> jobs = take_lane(i);
    std::unique_ptr<job> failed;
    const auto at = std::find_if(jobs.begin(), jobs.end(),
                                 [culprit](const auto& j) { return j.get() == culprit; });
    if (at != jobs.end()) {
      failed = std::move(*at);
      jobs.erase(at);
    }
    requeue(std::move(jobs));
    if (failed) fail(*failed, std::move(error));
  }

  /// For a transport that cannot go on as it is: every job, sent or not, fails with an
  /// exception of its own from `make`.
  void fail_everything(const std::function<std::exception_ptr()>& make) {
    for (std::size_t i = 0; i < lanes_.size(); ++i) fail_all(take_lane(i), make);
    fail_pending(make);
  }

  // --- cancelling -----------------------------------------------------------------------------

  /// Drops the sink's jobs that were not sent, and forgets the outcome of those sent. Those a
  /// worker has not started are taken back where `take_back(i, job)` can (true: worker i will
  /// skip it).
  template <class TakeBack>
  void cancel(const job_sink* sink, TakeBack&& take_back) {
    std::erase_if(pending_, [sink](const std::unique_ptr<job>& j) { return j->sink == sink; });
    for (std::size_t i = 0; i < lanes_.size(); ++i)
      for (auto& j : lanes_[i].in_flight) {
        if (j->sink != sink) continue;
        j->sink = nullptr;
        if (!j->withdrawn && take_back(i, *j)) j->withdrawn = true;
      }
  }
  void cancel(const job_sink* sink) {
    cancel(sink, [](std::size_t, const job&) { return false; });
  }

  /// Takes the sink's job back (future::cancel): out of the queue if it was not sent yet, or
  /// from its worker when `take_back` can. True when it was taken back: its sink is then never
  /// called. A job that started stays.
  template <class TakeBack>
  bool withdraw(const job_sink* sink, TakeBack&& take_back) {
    const auto it = std::find_if(pending_.begin(), pending_.end(),
                                 [sink](const std::unique_ptr<job>& j) { return j->sink == sink; });
    if (it != pending_.end()) {
      pending_.erase(it);
      return true;
    }
    for (std::size_t i = 0; i < lanes_.size(); ++i)
      for (auto& j : lanes_[i].in_flight) {
        if (j->sink != sink || j->withdrawn) continue;
        if (!take_back(i, *j)) return false;
        j->withdrawn = true;
        j->sink = nullptr;
        return true;
      }
    return false;
  }
  bool withdraw(const job_sink* sink) {
    return withdraw(sink, [](std::size_t, const job&) { return false; });
  }
  /// job_mailbox's withdrawal, for a transport that can neither take a job back from a worker
  /// nor stop one (MPI ranks): `kill` changes nothing.
  cancel_outcome withdraw_job(const job_sink* sink, bool /*kill*/) {
    return withdraw(sink) ? cancel_outcome::before_start : cancel_outcome::refused;
  }

  /// Where the sink's job is in flight: {worker, job}, or {worker count, null} when it is not.
  std::pair<std::size_t, job*> find_in_flight(const job_sink* sink) noexcept {
    for (std::size_t i = 0; i < lanes_.size(); ++i)
      for (auto& j : lanes_[i].in_flight)
        if (j->sink == sink) return {i, j.get()};
    return {lanes_.size(), nullptr};
  }

  /// Jobs posted and not finished whose outcome someone still waits for.
  std::size_t outstanding() const noexcept {
    std::size_t n = 0;
    for (const auto& j : pending_) n += j->sink != nullptr ? 1u : 0u;
    for (const auto& l : lanes_)
      for (const auto& j : l.in_flight) n += j->sink != nullptr ? 1u : 0u;
    return n;
  }

  std::size_t in_flight() const noexcept {
    std::size_t n = 0;
    for (const auto& l : lanes_) n += l.in_flight.size();
    return n;
  }

  // --- which worker next ----------------------------------------------------------------------

  /// Nanoseconds a job took in its worker, on average lately (0 before the first result).
  std::uint64_t typical_job_ns() const noexcept { return job_ns_; }
  /// When a result last reached its sink (os::monotonic_ns).
  std::uint64_t last_result_ns() const noexcept { return last_result_ns_; }

  /// How many jobs a worker may hold, the one it runs included. A job sent to a worker may not be
  /// taken back, so a worker holds only what it will start soon: about a millisecond of work
  /// queued behind the running job, so a worker never waits for its next short job; one job
  /// behind a job of a few milliseconds; none behind a long one, nor while no job's cost is
  /// known yet (a first job that runs for seconds holds nothing that an idle worker could run).
  /// Never fewer than config::min_depth.
  std::size_t depth() const noexcept {
    if (job_ns_ == 0 || job_ns_ >= long_job_ns) return std::max<std::size_t>(cfg_.min_depth, 1);
    return std::clamp<std::size_t>(static_cast<std::size_t>(queue_budget_ns / job_ns_) + 1,
                                   std::max<std::size_t>(cfg_.min_depth, 2), 64);
  }

  /// What a transport says of worker i for the next job.
  enum class fit {
    no,     // it cannot take one now (not started, ending, lost, its queue full)
    ready,  // a worker that could
    empty,  // no worker yet, one can be started: counts as idle, but loses ties (so a call of
            // one item starts one worker)
  };

  /// The worker for job j: among those `fits(i)` accepts, and j.workers allows, the one that
  /// could start it soonest, within queue_budget_ns (or holding fewer than config::min_depth)
  /// and holding fewer than depth() jobs. none: every worker has enough for now.
  ///
  /// Short jobs are packed (config::pack_ns): a worker that holds short jobs only and would
  /// start j within pack_ns gets it before an idle one. Waking an idle worker costs more than
  /// such a job (a socket write, a process switch), and a worker that wakes is one more process
  /// on the cores: on 2 cores, the caller driving and two workers, a 50-item map of 64 B took
  /// ~20 us as two jobs on two workers, 5-8 us as two on one. Should the busy worker's jobs
  /// run long after all, worth_moving() lets an idle worker take the queued ones back.
  template <class Fits>
  std::size_t least_busy(const job& j, std::uint64_t now, Fits&& fits) const {
    const std::size_t limit = depth();
    const std::size_t n = j.workers == 0 ? lanes_.size() : std::min(j.workers, lanes_.size());
    const bool pack = is_short(j);
    std::size_t best = none;
    std::uint64_t best_busy = 0;
    bool best_empty = false;
    std::size_t packed = none;  // the least busy worker that holds work and starts j soon
    std::uint64_t packed_busy = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const fit f = fits(i);
      if (f == fit::no) continue;
      const std::size_t live = lanes_[i].live();
      if (live >= limit) continue;
      const std::uint64_t busy = busy_for_ns(lanes_[i], live, now);
      if (busy > queue_budget_ns && live >= cfg_.min_depth) continue;
      if (pack && live > 0 && f == fit::ready) {
        const std::uint64_t short_busy = packed_busy_ns(lanes_[i], now);
        if (short_busy <= cfg_.pack_ns && (packed == none || short_busy < packed_busy)) {
          packed = i;
          packed_busy = short_busy;
        }
      }
      if (best == none || busy < best_busy ||
          (busy == best_busy && best_empty && f == fit::ready)) {
        best = i;
        best_busy = busy;
        best_empty = f == fit::empty;
      }
    }
    return packed != none ? packed : best;
  }

  /// Whether an idle worker should take back the jobs worker i holds and has not started: not
  /// while they are short jobs it should start within config::unpack_ns (least_busy() packed
  /// them there on purpose).
  bool worth_moving(std::size_t i, std::uint64_t now) const noexcept {
    return packed_busy_ns(lanes_[i], now) > unpack_after_ns();
  }

  /// When to look again at the short jobs worker i holds and has not started (os::monotonic_ns;
  /// 0: it holds none): worth_moving() turns true by then should they still be there. A
  /// transport that sleeps wakes by then, so an idle worker does not wait behind a packed job
  /// that ran long. Once that time has passed (jobs it could not take back: their worker had
  /// just started them), a millisecond from now.
  std::uint64_t moving_due_ns(std::size_t i, std::uint64_t now) const noexcept {
    const lane& l = lanes_[i];
    if (l.live() < 2 || packed_busy_ns(l, now) == std::numeric_limits<std::uint64_t>::max())
      return 0;
    // packed_busy_ns() passes the limit at the latest once the running job has run that long.
    const std::uint64_t due = l.front_since_ns + unpack_after_ns() + 1;
    return due > now ? due : now + 1'000'000;
  }

 private:
  /// How late a worker's packed jobs may be before an idle worker takes them back.
  std::uint64_t unpack_after_ns() const noexcept { return std::max(cfg_.pack_ns, cfg_.unpack_ns); }

  /// A job least_busy() may pack: expected to take less than config::pack_ns.
  bool is_short(const job& j) const noexcept {
    return cfg_.pack_ns != 0 && j.estimated_ns != 0 && j.estimated_ns < cfg_.pack_ns;
  }

  /// How long until a worker holding short jobs only could start one more, from their
  /// estimates; one that has run its work past them is taken to need as long again (as
  /// busy_for_ns()). Never (the largest value) when it holds a job that is not short.
  std::uint64_t packed_busy_ns(const lane& l, std::uint64_t now) const noexcept {
    std::uint64_t work = 0;
    for (const auto& j : l.in_flight) {
      if (j->withdrawn) continue;
      if (!is_short(*j)) return std::numeric_limits<std::uint64_t>::max();
      work += j->estimated_ns;
    }
    const std::uint64_t ran = now > l.front_since_ns ? now - l.front_since_ns : 0;
    return ran < work ? work - ran : ran;
  }

  /// How long until a worker could start one more job, holding `live` jobs it will run in `l`:
  /// the time left of its running job, then the typical time of each job queued behind it. A
  /// running job past the typical time is taken to need as long again as it has run so far (a
  /// job that is slow now tends to stay slow): so a worker stuck in a long job soon gets nothing
  /// queued behind it, while the others do.
  std::uint64_t busy_for_ns(const lane& l, std::size_t live, std::uint64_t now) const noexcept {
    if (live == 0) return 0;
    if (l.in_flight.front()->withdrawn) return live * job_ns_;
    const std::uint64_t ran = now > l.front_since_ns ? now - l.front_since_ns : 0;
    const std::uint64_t left = ran < job_ns_ ? job_ns_ - ran : ran;
    return left + (live - 1) * job_ns_;
  }

  /// A job's last call to its sink; the callers who watch for news without sleeping see it.
  void finished(job_sink& sink, job& j) {
    sink.done(j);
    if (cfg_.delivered != nullptr) cfg_.delivered->fetch_add(1, std::memory_order_release);
    if (cfg_.spares != nullptr) cfg_.spares->give(std::move(j.payload));
  }

  std::vector<lane> lanes_;
  config cfg_;
  std::deque<std::unique_ptr<job>> pending_;
  std::uint64_t last_id_ = 0;
  std::uint64_t job_ns_ = 0;
  std::uint64_t last_result_ns_ = 0;
};

}  // namespace parallel::detail::ipc
