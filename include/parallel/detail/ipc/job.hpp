// A job: a run of a call's items (or one submitted task) that goes to one worker, and the sink
// that receives its outcome. Both transports carry them: ipc::engine (worker processes) and
// ranks::cluster (MPI ranks), each through a job_core (job_core.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "../../codec.hpp"
#include "../../errors.hpp"
#include "frame.hpp"

namespace parallel::detail::ipc {

struct job;

/// Who receives a job's outcome. Called on the thread that drives the job's transport, in this
/// order: results (once, possibly with k = 0), then failed() when the job did not finish, then
/// done().
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
  std::uint64_t tag = 0;    // the sink's own bookkeeping
  std::size_t workers = 0;  // may run on the first `workers` workers only (0: on any)
  // What its worker should take to run it, as the call's measurements so far say (0: unknown).
  std::uint64_t estimated_ns = 0;
  // The transport's.
  std::uint64_t id = 0;
  std::uint64_t seq = 0;      // position in its worker's task stream
  std::uint64_t sent_ns = 0;  // when it was given to that worker
  // Taken back from its worker before it started (control_block::withdraw): what stays in that
  // worker's queue is this mark, without sink, until the worker says it skipped the task.
  bool withdrawn = false;
};

/// "item 7", "a task of items 0 to 9", "a task": what a job ran, for error messages.
inline std::string describe_items(const job& j) {
  if (j.first == remote_error::no_index) return "a task";
  if (j.count == 1) return "item " + std::to_string(j.first);
  return "a task of items " + std::to_string(j.first) + " to " +
         std::to_string(j.first + j.count - 1);
}

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

}  // namespace parallel::detail::ipc
