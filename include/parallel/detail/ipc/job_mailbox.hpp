// Where the callers of a transport driven by one thread (a process pool's I/O thread, the MPI
// cluster's) leave it work: jobs, cancellations and withdrawals. The transport's thread takes
// them at its next round (deliver()); a cancellation or withdrawal waits for that round's answer.
// A pool's callers also count their posts on a mailbox_bell, so the loop learns of them without
// a system call while it is awake.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "../futures/cancel_outcome.hpp"
#include "job.hpp"
#include "ring.hpp"

namespace parallel::detail::ipc {

class job_mailbox {
 public:
  /// Guards the mailbox; the owner may guard its own state with it too.
  std::mutex& mutex() noexcept { return mutex_; }
  /// Notified when a round answered (and for the owner's own changes).
  std::condition_variable& changed() noexcept { return changed_; }

  /// Every job of `batch`, which is left empty.
  void post(std::vector<std::unique_ptr<job>>& batch) {
    {
      std::lock_guard lock(mutex_);
      for (auto& j : batch) jobs_.push_back(std::move(j));
    }
    batch.clear();
  }

  /// Returns once the transport's thread has dropped the sink's jobs (it never calls the sink
  /// again). `wake()` is called with the mailbox locked: it must make that thread take a round.
  template <class Wake>
  void cancel(job_sink* sink, Wake&& wake) {
    std::unique_lock lock(mutex_);
    cancels_.push_back(sink);
    const std::uint64_t ticket = ++cancel_requests_;
    wake();
    changed_.wait(lock, [&] { return cancel_done_ >= ticket; });
  }

  /// future::cancel of a submitted task: before_start when its job was not sent to a worker yet
  /// (or its worker gave it back), killed when `kill` asked for its running worker to be killed
  /// and it was; either way the sink is not called.
  template <class Wake>
  cancel_outcome withdraw(job_sink* sink, bool kill, Wake&& wake) {
    std::unique_lock lock(mutex_);
    const auto posted =
        std::find_if(jobs_.begin(), jobs_.end(), [sink](const auto& j) { return j->sink == sink; });
    if (posted != jobs_.end()) {  // the transport has not seen it yet
      jobs_.erase(posted);
      return cancel_outcome::before_start;
    }
    request r{sink, kill};
    withdrawals_.push_back(&r);
    wake();
    changed_.wait(lock, [&] { return r.answered; });
    return r.outcome;
  }

  /// The transport's thread, with mutex() held: hands what callers left to `t` (which has
  /// post(std::unique_ptr<job>), cancel(sink) and withdraw_job(sink, kill) -> cancel_outcome), and
  /// answers them.
  template <class Target>
  void deliver(Target& t) {
    for (auto& j : jobs_) t.post(std::move(j));
    jobs_.clear();
    if (!cancels_.empty()) {
      for (auto* sink : cancels_) t.cancel(sink);
      cancels_.clear();
      cancel_done_ = cancel_requests_;
      changed_.notify_all();
    }
    if (!withdrawals_.empty()) {
      for (auto* r : withdrawals_) {
        r->outcome = t.withdraw_job(r->sink, r->kill);
        r->answered = true;
      }
      withdrawals_.clear();
      changed_.notify_all();
    }
  }

 private:
  struct request {
    job_sink* sink;
    bool kill = false;
    bool answered = false;
    cancel_outcome outcome = cancel_outcome::refused;
  };

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::unique_ptr<job>> jobs_;
  std::vector<job_sink*> cancels_;
  std::vector<request*> withdrawals_;  // each on its caller's stack until answered
  std::uint64_t cancel_requests_ = 0;
  std::uint64_t cancel_done_ = 0;
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

}  // namespace parallel::detail::ipc
