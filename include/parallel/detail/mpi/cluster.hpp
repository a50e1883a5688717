// Rank 0's side: the cluster of ranks that run tasks, driven by one I/O thread (the only thread
// of rank 0 that calls MPI while it runs). The calls reach it through a runner (process_verbs),
// exactly as they reach a process pool: jobs in, results out through each job's sink.
//
// Scheduling is dynamic: a job goes to the rank with the fewest jobs in flight, up to `depth`
// per rank, so a rank never waits for its next task while the previous result travels. Results
// come back in the order a rank was sent its jobs; a rank's first job in flight is the one it
// runs, and only that one's time counts against options.timeout.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../algorithms/process_verbs.hpp"
#include "mpi_api.hpp"
#include "transport.hpp"

namespace parallel::detail::ranks {

class cluster {
 public:
  static constexpr std::size_t depth = 2;  // jobs in flight per rank

  explicit cluster(int size) : ranks_(static_cast<std::size_t>(size > 1 ? size - 1 : 0)) {
    for (std::size_t i = 0; i < ranks_.size(); ++i) ranks_[i].rank = static_cast<int>(i) + 1;
    io_ = std::thread([this] { loop(); });
  }

  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// Finishes every job posted, then stops the I/O thread (rank 0's program is ending).
  ~cluster() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (io_.joinable()) io_.join();
  }

  /// Ranks that run tasks (1 when rank 0 is alone and runs them itself).
  std::size_t ranks() const noexcept { return ranks_.empty() ? 1 : ranks_.size(); }

  /// Posts jobs that may run on ranks 1..limit only (0 = any).
  void post(std::vector<std::unique_ptr<ipc::job>>& batch, std::size_t limit) {
    {
      std::lock_guard lock(mutex_);
      for (auto& j : batch) inbox_.push_back({std::move(j), limit, 0});
    }
    batch.clear();
    wake_.notify_all();
  }

  /// Returns once the I/O thread has dropped the sink's jobs: it never calls the sink again.
  void cancel(ipc::job_sink* sink) {
    std::unique_lock lock(mutex_);
    cancels_.push_back(sink);
    const std::uint64_t ticket = ++cancel_requests_;
    wake_.notify_all();
    cancelled_.wait(lock, [&] { return cancel_done_ >= ticket; });
  }

  /// future::cancel of a submitted task: true when its job was not sent to a rank yet, and now
  /// never will be (the sink is not called). The I/O thread answers at its next round.
  bool withdraw(ipc::job_sink* sink) {
    std::unique_lock lock(mutex_);
    const auto posted = std::find_if(inbox_.begin(), inbox_.end(),
                                     [sink](const entry& e) { return e.job->sink == sink; });
    if (posted != inbox_.end()) {
      inbox_.erase(posted);
      return true;
    }
    withdrawal_request request{sink};
    withdrawals_.push_back(&request);
    wake_.notify_all();
    cancelled_.wait(lock, [&] { return request.answered; });
    return request.taken;
  }

  static bool withdraw_from(void* c, ipc::job_sink* sink) {
    return static_cast<cluster*>(c)->withdraw(sink);
  }

  /// Ranks abandoned because a task overran its timeout there: they are still running it, so
  /// MPI cannot be finalized cleanly at the end.
  std::vector<int> stuck_ranks() const {
    std::vector<int> out;
    for (const auto& r : ranks_)
      if (r.stuck) out.push_back(r.rank);
    return out;
  }

  /// Every rank that should hear "stop" at the end.
  std::vector<int> ranks_to_stop() const {
    std::vector<int> out;
    for (const auto& r : ranks_)
      if (!r.stuck) out.push_back(r.rank);
    return out;
  }

 private:
  struct entry {
    std::unique_ptr<ipc::job> job;
    std::size_t limit = 0;
    std::uint64_t sent_ns = 0;
    // The send in progress: header and request (the payload is the job's own).
    ipc::header_bytes header{};
    MPI_Request request = MPI_REQUEST_NULL;
  };

  struct rank_state {
    int rank = 0;
    bool greeted = false;
    bool lost = false;           // no more jobs go there
    bool stuck = false;          // lost because a task overran its timeout: it still runs it
    std::uint64_t stuck_on = 0;  // that task's id
    std::string why;             // why it was lost
    std::deque<entry> in_flight;
    std::uint64_t front_started_ns = 0;  // when the job at the front began to run there
  };

  void loop() {
    backoff idle;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        for (auto& e : inbox_) pending_.push_back(std::move(e));
        inbox_.clear();
        if (!cancels_.empty()) {
          for (auto* sink : cancels_) forget(sink);
          cancels_.clear();
          cancel_done_ = cancel_requests_;
          cancelled_.notify_all();
        }
        if (!withdrawals_.empty()) {
          for (auto* request : withdrawals_) {
            const auto it = std::find_if(pending_.begin(), pending_.end(), [&](const entry& e) {
              return e.job->sink == request->sink;
            });
            request->taken = it != pending_.end();
            if (request->taken) pending_.erase(it);
            request->answered = true;
          }
          withdrawals_.clear();
          cancelled_.notify_all();
        }
        const bool busy = !pending_.empty() || in_flight() > 0;
        if (stopping_ && !busy && greeted_or_lost()) break;
        if (!busy && greeted_or_lost()) {
          wake_.wait(lock);
          continue;
        }
      }
      bool progressed = false;
      try {
        progressed = receive_all();
        progressed = dispatch() || progressed;
        check_timeouts();
        fail_if_no_rank();
      } catch (const std::exception& e) {
        // MPI itself failed on rank 0: nothing posted can finish.
        fail_everything(std::make_exception_ptr(parallel::error(e.what())));
      }
      if (progressed) {
        idle.reset();
      } else {
        idle.pause();
      }
    }
  }

  std::size_t in_flight() const noexcept {
    std::size_t n = 0;
    for (const auto& r : ranks_) n += r.in_flight.size();
    return n;
  }

  bool greeted_or_lost() const noexcept {
    return std::all_of(ranks_.begin(), ranks_.end(),
                       [](const rank_state& r) { return r.greeted || r.lost; });
  }

  void forget(const ipc::job_sink* sink) {
    std::erase_if(pending_, [sink](const entry& e) { return e.job->sink == sink; });
    for (auto& r : ranks_)
      for (auto& e : r.in_flight)
        if (e.job->sink == sink) e.job->sink = nullptr;
  }

  // --- sending ----------------------------------------------------------------------------------

  bool dispatch() {
    if (ranks_.empty()) return run_here();
    bool sent = false;
    while (!pending_.empty()) {
      entry& next = pending_.front();
      if (next.job->sink == nullptr) {
        pending_.pop_front();
        continue;
      }
      rank_state* best = nullptr;
      const std::size_t limit = next.limit == 0 ? ranks_.size() : next.limit;
      for (std::size_t i = 0; i < std::min(limit, ranks_.size()); ++i) {
        rank_state& r = ranks_[i];
        if (!r.greeted || r.lost || r.in_flight.size() >= depth) continue;
        if (best == nullptr || r.in_flight.size() < best->in_flight.size()) best = &r;
      }
      if (best == nullptr) break;
      entry e = std::move(next);
      pending_.pop_front();
      send(*best, std::move(e));
      sent = true;
    }
    return sent;
  }

  void send(rank_state& r, entry e) {
    const std::span<const std::byte> payload = e.job->payload;
    e.header = ipc::encode_header(ipc::frame_type::task, ipc::frame_flags::none, e.job->id = ++ids_,
                                  payload.size());
    e.sent_ns = os::monotonic_ns();
    if (r.in_flight.empty()) r.front_started_ns = e.sent_ns;
    r.in_flight.push_back(std::move(e));
    entry& placed = r.in_flight.back();  // deque: its address stays while it is in flight
    try {
      const frame_type_guard gathered(placed.header, payload);
      check(
          MPI_Isend(MPI_BOTTOM, 1, gathered.get(), r.rank, tag_task, state().comm, &placed.request),
          "MPI_Isend");
    } catch (...) {
      lose(r, "parallel: cannot send a task to MPI rank " + std::to_string(r.rank), false,
           std::current_exception());
    }
  }

  // Rank 0 alone (mpirun -np 1, or a plain run): it runs the tasks itself, on this thread.
  bool run_here() {
    if (pending_.empty()) return false;
    while (!pending_.empty()) {
      entry e = std::move(pending_.front());
      pending_.pop_front();
      if (e.job->sink == nullptr) continue;
      run_task(e.job->payload, scratch_);
      settle(*e.job, scratch_, 0);
    }
    return true;
  }

  // --- receiving --------------------------------------------------------------------------------

  bool receive_all() {
    bool any = false;
    for (;;) {
      int found = 0;
      MPI_Message m;
      MPI_Status status;
      check(MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, state().comm, &found, &m, &status),
            "MPI_Improbe");
      if (found == 0) return any;
      any = true;
      const int source = status.MPI_SOURCE;
      if (source < 1 || static_cast<std::size_t>(source) > ranks_.size()) {
        MPI_Status ignored;
        char sink = 0;
        (void)MPI_Mrecv(&sink, 0, MPI_BYTE, &m, &ignored);
        continue;
      }
      rank_state& r = ranks_[static_cast<std::size_t>(source) - 1];
      try {
        message in = receive(m, status, ipc::max_task_payload);
        if (r.stuck && in.tag == tag_result && in.header.task_id == r.stuck_on) {
          r.stuck = false;  // the overrunning task ended after all: the rank can finalize
          continue;
        }
        if (r.lost) continue;  // a rank given up on: what it says no longer matters
        handle(r, in);
      } catch (const std::exception& e) {
        if (!r.lost)
          lose(r, std::string(e.what()) + " (from MPI rank " + std::to_string(r.rank) + ")", false);
      }
    }
  }

  void handle(rank_state& r, message& in) {
    if (in.tag == tag_hello && in.header.type == ipc::frame_type::hello) {
      decoder hello(in.payload());
      (void)hello.read<std::uint64_t>();
      const ipc::code_location theirs = ipc::decode_location(hello);
      if (!(theirs == ipc::anchor_location())) {
        lose(r,
             "parallel: MPI rank " + std::to_string(r.rank) +
                 " runs a different executable than rank 0 (handshake: the library's anchor "
                 "function is at a different offset); every rank must run this very build",
             false, nullptr, true);
        return;
      }
      r.greeted = true;
      return;
    }
    if (in.tag != tag_result || in.header.type != ipc::frame_type::result) {
      ipc::wire::protocol_error("MPI rank " + std::to_string(r.rank) + " sent a " +
                                ipc::to_string(in.header.type) + " frame with tag " +
                                std::to_string(in.tag));
    }
    if (!r.greeted) ipc::wire::protocol_error("a result before the rank's handshake");
    if (r.in_flight.empty() || r.in_flight.front().job->id != in.header.task_id) {
      ipc::wire::protocol_error("the result of task " + std::to_string(in.header.task_id) +
                                ", which the rank was not running");
    }
    entry e = std::move(r.in_flight.front());
    r.in_flight.pop_front();
    r.front_started_ns = os::monotonic_ns();
    // The rank received the task before it answered: this completes at once.
    MPI_Wait(&e.request, MPI_STATUS_IGNORE);
    settle(*e.job, in.payload(), r.rank);
  }

  // The result payload of one job (worker.hpp's layout) to its sink; `rank` for the messages.
  static void settle(ipc::job& j, std::span<const std::byte> payload, int rank) {
    ipc::job_sink* sink = j.sink;
    if (sink == nullptr) return;  // cancelled
    j.sink = nullptr;
    const std::string where = " (on MPI rank " + std::to_string(rank) + ")";
    std::exception_ptr error;
    try {
      decoder in(payload);
      const auto took = in.read<std::uint64_t>();
      const auto k = in.read<std::uint64_t>();
      if (k > j.count) {
        ipc::wire::protocol_error("a rank sent " + std::to_string(k) + " results for a task of " +
                                  std::to_string(j.count) + " items");
      }
      sink->results(j, in, k, took);
      error = ipc::read_task_failure(in, where);
    } catch (...) {
      error = std::current_exception();  // a result's codec threw, or the payload is corrupt
    }
    if (error) sink->failed(j, std::move(error));
    sink->done(j);
  }

  // --- failures ---------------------------------------------------------------------------------

  // Stops using rank r: its job in flight fails with `error` (or a parallel::error of `why`), the
  // jobs queued behind it go back to the others. `stuck`: it still runs a task.
  void lose(rank_state& r, const std::string& why, bool stuck, std::exception_ptr error = nullptr,
            bool startup = false) {
    r.lost = true;
    r.stuck = stuck;
    r.why = why;
    if (stuck && !r.in_flight.empty()) r.stuck_on = r.in_flight.front().job->id;
    if (!error) {
      error = startup ? std::make_exception_ptr(spawn_error(why))
                      : std::make_exception_ptr(parallel::error(why));
    }
    std::deque<entry> jobs = std::move(r.in_flight);
    r.in_flight.clear();
    bool first = true;
    std::vector<entry> requeue;
    for (auto& e : jobs) {
      if (e.request != MPI_REQUEST_NULL) {
        // A send the rank will never take: cancel it (best effort) and let it go.
        MPI_Cancel(&e.request);
        MPI_Request_free(&e.request);
      }
      if (first || !stuck) {
        first = false;
        fail(*e.job, error);
      } else {
        requeue.push_back(std::move(e));  // never started: another rank runs it
      }
    }
    for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) {
      it->request = MPI_REQUEST_NULL;
      pending_.push_front(std::move(*it));
    }
  }

  static void fail(ipc::job& j, const std::exception_ptr& error) {
    ipc::job_sink* sink = j.sink;
    if (sink == nullptr) return;
    j.sink = nullptr;
    sink->failed(j, error);
    sink->done(j);
  }

  void check_timeouts() {
    const std::uint64_t now = os::monotonic_ns();
    for (auto& r : ranks_) {
      if (!r.greeted && !r.lost && now - started_ns_ > hello_timeout_ns) {
        lose(r,
             "parallel: MPI rank " + std::to_string(r.rank) +
                 " did not reach parallel::mpi_main within 30 s of rank 0's first MPI call; "
                 "make parallel::mpi_main(argc, argv) the first statement of main on every rank",
             false, nullptr, true);
        continue;
      }
      if (r.lost || r.in_flight.empty()) continue;
      const ipc::job& j = *r.in_flight.front().job;
      if (j.timeout.count() <= 0) continue;
      const auto limit = static_cast<std::uint64_t>(j.timeout.count()) * 1'000'000;
      if (now - r.front_started_ns <= limit) continue;
      const std::string what =
          j.first == remote_error::no_index
              ? std::string("a task")
              : (j.count == 1 ? "item " + std::to_string(j.first)
                              : "a task of items " + std::to_string(j.first) + " to " +
                                    std::to_string(j.first + j.count - 1));
      lose(r,
           "parallel: " + what + " did not finish within " + std::to_string(j.timeout.count()) +
               " ms on MPI rank " + std::to_string(r.rank) +
               "; MPI cannot stop a rank, so that rank is left out from now on, and at the end "
               "of the program the job ends with MPI_Abort",
           true,
           std::make_exception_ptr(timeout_error(
               "parallel: " + what + " did not finish within " + std::to_string(j.timeout.count()) +
               " ms on MPI rank " + std::to_string(r.rank) +
               "; that rank is left out from now on (MPI cannot stop it), and the job ends with "
               "MPI_Abort when the program ends")));
    }
  }

  // Every rank lost: the jobs waiting fail instead of waiting for ever.
  void fail_if_no_rank() {
    if (ranks_.empty() || pending_.empty()) return;
    if (!std::all_of(ranks_.begin(), ranks_.end(), [](const rank_state& r) { return r.lost; }))
      return;
    std::string why = "parallel: no MPI rank is left to run tasks:";
    for (const auto& r : ranks_) why += " rank " + std::to_string(r.rank) + ": " + r.why + ";";
    why.pop_back();
    const auto error = std::make_exception_ptr(worker_died(why));
    std::deque<entry> waiting = std::move(pending_);
    pending_.clear();
    for (auto& e : waiting) fail(*e.job, error);
  }

  void fail_everything(const std::exception_ptr& error) {
    std::deque<entry> waiting = std::move(pending_);
    pending_.clear();
    for (auto& e : waiting) fail(*e.job, error);
    for (auto& r : ranks_) {
      std::deque<entry> jobs = std::move(r.in_flight);
      r.in_flight.clear();
      for (auto& e : jobs) fail(*e.job, error);
      r.lost = true;
      r.why = "MPI failed on rank 0";
    }
  }

  static constexpr std::uint64_t hello_timeout_ns = 30'000'000'000;
  std::uint64_t started_ns_ = os::monotonic_ns();
  std::vector<rank_state> ranks_;
  std::deque<entry> pending_;  // the I/O thread's
  std::uint64_t ids_ = 0;
  std::vector<std::byte> scratch_;

  std::mutex mutex_;
  std::condition_variable wake_;       // the I/O thread waits on it when there is nothing to do
  std::condition_variable cancelled_;  // cancel() waits on it
  std::vector<entry> inbox_;
  std::vector<ipc::job_sink*> cancels_;
  struct withdrawal_request {
    ipc::job_sink* sink;
    bool answered = false;
    bool taken = false;
  };
  std::vector<withdrawal_request*> withdrawals_;  // each on its caller's stack until answered
  std::uint64_t cancel_requests_ = 0;
  std::uint64_t cancel_done_ = 0;
  bool stopping_ = false;
  std::thread io_;
};

}  // namespace parallel::detail::ranks
