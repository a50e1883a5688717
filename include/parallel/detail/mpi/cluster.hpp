// Rank 0's side: the cluster of ranks that run tasks, driven by one I/O thread (the only thread
// of rank 0 that calls MPI while it runs). The calls reach it through a runner (process_verbs),
// exactly as they reach a process pool: jobs in, results out through each job's sink.
//
// The jobs are the job core's (ipc::job_core, shared with the process engine): a job goes to the
// rank that could start it soonest. A rank holds the job it runs and the next one, whatever
// their length (this loop polls MPI and may see a result up to a millisecond late: the rank must
// not wait for it), and more short ones, up to about a millisecond of work. Results come back in
// the order a rank was sent its jobs; a rank's first job in flight is the one it runs, and only
// that one's time counts against options.timeout.
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
#include "../ipc/job_core.hpp"
#include "../ipc/job_mailbox.hpp"
#include "mpi_api.hpp"
#include "transport.hpp"

namespace parallel::detail::ranks {

class cluster {
 public:
  explicit cluster(int size)
      : ranks_(static_cast<std::size_t>(size > 1 ? size - 1 : 0)),
        core_(ranks_.size(), {.min_depth = 2}) {
    for (std::size_t i = 0; i < ranks_.size(); ++i) ranks_[i].rank = static_cast<int>(i) + 1;
    io_ = std::thread([this] { loop(); });
  }

  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// Finishes every job posted, then stops the I/O thread (rank 0's program is ending).
  ~cluster() {
    {
      std::lock_guard lock(mailbox_.mutex());
      stopping_ = true;
    }
    wake_.notify_all();
    if (io_.joinable()) io_.join();
  }

  /// Ranks that run tasks (1 when rank 0 is alone and runs them itself).
  std::size_t ranks() const noexcept { return ranks_.empty() ? 1 : ranks_.size(); }

  /// Posts jobs that may run on ranks 1..limit only (0 = any).
  void post(std::vector<std::unique_ptr<ipc::job>>& batch, std::size_t limit) {
    for (auto& j : batch) j->workers = limit;
    mailbox_.post(batch);
    wake_.notify_all();
  }

  /// Returns once the I/O thread has dropped the sink's jobs: it never calls the sink again.
  void cancel(ipc::job_sink* sink) {
    mailbox_.cancel(sink, [this] { wake_.notify_all(); });
  }

  /// future::cancel of a submitted task: before_start when its job was not sent to a rank yet,
  /// and now never will be (the sink is not called). The I/O thread answers at its next round.
  /// A rank is not this process's to kill: `kill` changes nothing.
  cancel_outcome withdraw(ipc::job_sink* sink, bool /*kill*/) {
    return mailbox_.withdraw(sink, false, [this] { wake_.notify_all(); });
  }

  static cancel_outcome withdraw_from(void* c, ipc::job_sink* sink, bool kill) {
    return static_cast<cluster*>(c)->withdraw(sink, kill);
  }

 private:
  /// A task's send in progress: its header and request (the payload is the job's own).
  struct outgoing {
    ipc::header_bytes header{};
    MPI_Request request = MPI_REQUEST_NULL;
  };

  struct rank_state {
    int rank = 0;
    bool greeted = false;
    bool lost = false;           // no more jobs go there
    std::string why;             // why it was lost
    std::deque<outgoing> sends;  // one per job in its lane, in the same order
  };

  void loop() {
    backoff idle;
    for (;;) {
      {
        std::unique_lock lock(mailbox_.mutex());
        mailbox_.deliver(core_);
        const bool busy = core_.pending() > 0 || core_.in_flight() > 0;
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
        fail_everything(e.what());
      }
      if (progressed) {
        idle.reset();
      } else {
        idle.pause();
      }
    }
  }

  bool greeted_or_lost() const noexcept {
    return std::all_of(ranks_.begin(), ranks_.end(),
                       [](const rank_state& r) { return r.greeted || r.lost; });
  }

  // --- sending ----------------------------------------------------------------------------------

  bool dispatch() {
    if (ranks_.empty()) return run_here();
    bool sent = false;
    const std::uint64_t now = os::monotonic_ns();
    const auto fits = [this](std::size_t i) {
      const rank_state& r = ranks_[i];
      return r.greeted && !r.lost ? ipc::job_core::fit::ready : ipc::job_core::fit::no;
    };
    while (const ipc::job* next = core_.next()) {
      const std::size_t i = core_.least_busy(*next, now, fits);
      if (i == ipc::job_core::none) break;
      send(i, now);
      sent = true;
    }
    return sent;
  }

  void send(std::size_t i, std::uint64_t now) {
    rank_state& r = ranks_[i];
    const ipc::job& j = core_.give_next(i, now);
    const std::span<const std::byte> payload = j.payload;  // MPI's jobs borrow nothing
    outgoing& o = r.sends.emplace_back();  // deque: its address stays while it is in flight
    o.header =
        ipc::encode_header(ipc::frame_type::task, ipc::frame_flags::none, j.id, payload.size());
    try {
      const frame_type_guard gathered(o.header, payload);
      check(MPI_Isend(MPI_BOTTOM, 1, gathered.get(), r.rank, tag_task, state().comm, &o.request),
            "MPI_Isend");
    } catch (...) {
      lose(i, "parallel: cannot send a task to MPI rank " + std::to_string(r.rank),
           std::current_exception(), false, &j);
    }
  }

  // Rank 0 alone (mpirun -np 1, or a plain run): it runs the tasks itself, on this thread.
  bool run_here() {
    if (core_.next() == nullptr) return false;
    while (core_.next() != nullptr) {
      std::unique_ptr<ipc::job> j = core_.take_next();
      run_task(j->payload, scratch_);
      try {
        core_.settle(*j, scratch_, " (on MPI rank 0)");
      } catch (const std::exception&) {  // the job failed with it: no rank to blame
      }
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
      const std::size_t i = static_cast<std::size_t>(source) - 1;
      rank_state& r = ranks_[i];
      try {
        message in = receive(m, status, ipc::max_task_payload);
        if (r.lost) continue;  // a rank given up on: what it says no longer matters
        handle(i, in);
      } catch (const std::exception& e) {
        if (!r.lost)
          lose(i, std::string(e.what()) + " (from MPI rank " + std::to_string(r.rank) + ")");
      }
    }
  }

  void handle(std::size_t i, message& in) {
    rank_state& r = ranks_[i];
    if (in.tag == tag_hello && in.header.type == ipc::frame_type::hello) {
      decoder hello(in.payload());
      (void)hello.read<std::uint64_t>();
      const ipc::code_location theirs = ipc::decode_location(hello);
      if (!(theirs == ipc::anchor_location())) {
        lose(i,
             "parallel: MPI rank " + std::to_string(r.rank) +
                 " runs a different executable than rank 0 (handshake: the library's anchor "
                 "function is at a different offset); every rank must run this very build",
             nullptr, true);
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
    std::unique_ptr<ipc::job> j = core_.take_result(i, in.header.task_id, os::monotonic_ns());
    // The rank received the task before it answered: this completes at once.
    MPI_Wait(&r.sends.front().request, MPI_STATUS_IGNORE);
    r.sends.pop_front();
    // A result that breaks the layout fails its job and is thrown: the rank is lost.
    core_.settle(*j, in.payload(), " (on MPI rank " + std::to_string(r.rank) + ")");
  }

  // --- failures ---------------------------------------------------------------------------------

  // Stops using rank i: `culprit` (its job in flight when none is named) fails with `error` (or
  // an error of `why`), the jobs queued behind it go to the others. `startup`: it never became
  // ready.
  void lose(std::size_t i, const std::string& why, std::exception_ptr error = nullptr,
            bool startup = false, const ipc::job* culprit = nullptr) {
    rank_state& r = ranks_[i];
    r.lost = true;
    r.why = why;
    const auto& held = core_.at(i).in_flight;
    if (culprit == nullptr && !held.empty()) culprit = held.front().get();
    if (!error) {
      error = startup ? std::make_exception_ptr(spawn_error(why))
                      : std::make_exception_ptr(parallel::error(why));
    }
    drop_sends(r);
    core_.lose(i, culprit, std::move(error));
  }

  // Sends the rank will never take: cancelled (best effort) and let go.
  static void drop_sends(rank_state& r) {
    for (auto& o : r.sends) {
      if (o.request == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&o.request);
      MPI_Request_free(&o.request);
    }
    r.sends.clear();
  }

  void check_timeouts() {
    const std::uint64_t now = os::monotonic_ns();
    for (std::size_t i = 0; i < ranks_.size(); ++i) {
      rank_state& r = ranks_[i];
      if (!r.greeted && !r.lost && now - started_ns_ > hello_timeout_ns) {
        lose(i,
             "parallel: MPI rank " + std::to_string(r.rank) +
                 " did not reach parallel::mpi_main within 30 s of rank 0's first MPI call; "
                 "make parallel::mpi_main(argc, argv) the first statement of main on every rank",
             nullptr, true);
        continue;
      }
      const ipc::lane& l = core_.at(i);
      if (r.lost || l.in_flight.empty()) continue;
      const ipc::job& j = *l.in_flight.front();
      if (j.timeout.count() <= 0) continue;
      const auto limit = static_cast<std::uint64_t>(j.timeout.count()) * 1'000'000;
      if (now - l.front_since_ns <= limit) continue;
      const std::string what = ipc::describe_items(j) + " did not finish within " +
                               std::to_string(j.timeout.count()) + " ms on MPI rank " +
                               std::to_string(r.rank);
      lose(i,
           "parallel: " + what +
               "; MPI cannot stop a task, so that rank is left out from now on (it leaves the "
               "task when the program ends)",
           std::make_exception_ptr(timeout_error(
               "parallel: " + what +
               "; that rank is left out from now on (MPI cannot stop a task; the rank leaves it "
               "when the program ends)")));
    }
  }

  // Every rank lost: the jobs waiting fail instead of waiting for ever.
  void fail_if_no_rank() {
    if (ranks_.empty() || core_.pending() == 0) return;
    if (!std::all_of(ranks_.begin(), ranks_.end(), [](const rank_state& r) { return r.lost; }))
      return;
    std::string why = "parallel: no MPI rank is left to run tasks:";
    for (const auto& r : ranks_) why += " rank " + std::to_string(r.rank) + ": " + r.why + ";";
    why.pop_back();
    core_.fail_pending([&why] { return std::make_exception_ptr(worker_died(why)); });
  }

  void fail_everything(const std::string& what) {
    core_.fail_everything([&what] { return std::make_exception_ptr(parallel::error(what)); });
    for (auto& r : ranks_) {
      drop_sends(r);
      r.lost = true;
      r.why = "MPI failed on rank 0";
    }
  }

  static constexpr std::uint64_t hello_timeout_ns = 30'000'000'000;
  std::uint64_t started_ns_ = os::monotonic_ns();
  std::vector<rank_state> ranks_;
  ipc::job_core core_;  // the I/O thread's: jobs waiting, and each rank's lane
  std::vector<std::byte> scratch_;

  ipc::job_mailbox mailbox_;      // its mutex guards stopping_ too
  std::condition_variable wake_;  // the I/O thread waits on it when there is nothing to do
  bool stopping_ = false;
  std::thread io_;
};

}  // namespace parallel::detail::ranks
