// What ipc::engine (engine.hpp) is given and what it keeps: its configuration, and for each
// worker its process, channel, arena and rings, where its jobs stand and why it was stopped.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../process_platform.hpp"
#include "arena.hpp"
#include "frame.hpp"
#include "frame_reader.hpp"
#include "job_core.hpp"
#include "payload_cache.hpp"
#include "ring.hpp"

namespace parallel::detail::ipc {

/// How a worker ended: its wait status (-1: not known), and what the start method knows of why
/// (a forkserver's workers die with their server).
struct worker_end {
  int status = -1;
  std::string note{};
};

/// What an engine runs: how many workers, how they start and end, and its limits.
struct engine_config {
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
  /// The pool's hooks (hooks.hpp's pack_hooks), given to each worker in its arena.
  std::vector<std::byte> hooks{};
  /// How long a worker whose channel closed may take to end (its on_exit included) before
  /// it is killed.
  std::chrono::milliseconds end_grace{1000};
  /// Forked workers (no descriptor to pass, no hooks): their arenas come from arena_cache and
  /// go back to it when they end, so a per-call engine does not make and unmap them each call.
  bool reuse_arenas = false;
};

/// Why the engine stopped a worker: a task's timeout, a start that took too long, a frame that
/// broke the protocol, or none of its jobs' doing (the caller could not take a result: the
/// result's job failed already, the others go to other workers).
enum class worker_stop { none, timeout, start_timeout, protocol, replace, cancel };

/// What the engine keeps of one worker: its slot (a worker that ends leaves it to the next).
struct worker_slot {
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
  lane* jobs = nullptr;          // its jobs, in the core
  std::uint64_t sent = 0;        // tasks sent to this worker
  std::uint64_t generation = 0;  // bumped at each launch: poll results of a former worker
  bool greeted = false;          // ready for tasks (its initializer, if any, has run)
  bool alive = false;            // said hello at all
  bool relaunch = false;         // empty, and to get a worker without waiting for jobs
  std::uint64_t launched_ns = 0;
  std::uint64_t start_failed_ns = 0;  // when a start last failed here (0: it did not)
  std::uint64_t failed_round = 0;     // the dispatch() round of that failure
  std::uint64_t alive_ns = 0;         // when it said hello
  std::size_t results_parsed = 0;     // result headers read whose frames are not handled yet
  std::string startup_error;
  worker_stop stopping = worker_stop::none;
  std::string stop_message;
};

/// A worker that left its slot (max_tasks_per_child) and has yet to end and be reaped: the
/// loop goes on meanwhile, and kills it when it outstays end_grace.
struct retired_worker {
  os::pid_type pid = -1;
  os::process_watch_handle watch;
  std::uint64_t deadline_ns = 0;
  bool killed = false;
};

}  // namespace parallel::detail::ipc
