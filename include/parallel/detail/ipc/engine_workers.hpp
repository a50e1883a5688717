// ipc::engine, continued (engine.hpp includes it): starting workers, ending and
// reaping them, and what a worker's end means for its jobs. Ending never waits without a bound:
// a worker that does not end within end_grace after its channel closed (stopped by a
// debugger, frozen) is killed; every signal goes to a worker the engine started and has not
// reaped, through its process watch where there is one.
#pragma once

#include "engine_class.hpp"

namespace parallel::detail::ipc {

inline void engine::launch(slot& s) {
  auto [mine, theirs] = os::make_channel();
  std::unique_ptr<arena> shared;
  if (cfg_.reuse_arenas && cfg_.hooks.empty()) shared = arena_cache::here().take(cfg_.ring_bytes);
  if (shared == nullptr) shared = std::make_unique<arena>(cfg_.ring_bytes, cfg_.hooks);
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

inline bool engine::try_launch(slot& s) {
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

inline bool engine::gives_advice(const std::string& why) {
  return why.find("ulimit") != std::string::npos || why.find("spawn_main") != std::string::npos;
}

inline std::string engine::start_failure_message(const std::string& why) const {
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

inline std::size_t engine::running_workers() const noexcept {
  std::size_t n = 0;
  for (const auto& s : slots_) n += s.pid >= 0 && s.stopping == stop_reason::none ? 1 : 0;
  return n;
}

inline void engine::callers_watch(bool watching) noexcept {
  for (auto& s : slots_) {
    if (s.pid < 0 || !s.rings) continue;
    if (watching)
      s.shared->control().caller_bell.awake();
    else
      s.shared->control().caller_bell.sleeping();
  }
}

inline void engine::retire_finished() {
  for (auto& s : slots_)
    if (s.pid >= 0 && s.stopping == stop_reason::none && retiring(s) && s.jobs->in_flight.empty())
      retire(s);
}

inline void engine::replenish() {
  const std::uint64_t due = retry_due_ns();
  const std::uint64_t now = due != 0 ? os::monotonic_ns() : 0;
  for (auto& s : slots_) {
    if (s.pid >= 0) continue;
    if (s.relaunch || (due != 0 && start_retry_due(s, now))) (void)try_launch(s);
  }
}

inline void engine::shut_down() noexcept {
  const std::uint64_t deadline = os::monotonic_ns() + end_grace_ns();
  for (auto& s : slots_) {
    if (s.pid < 0) continue;
    if (!s.jobs->in_flight.empty()) os::signal_process(s.watch, s.pid, os::kill_signal);
    s.channel.reset();
  }
  for (auto& s : slots_) {
    if (s.pid < 0) continue;
    const worker_end end = finish(s.pid, s.watch, deadline);
    s.pid = -1;
    s.watch.reset();
    // Its worker reaped, the arena can serve the next call's (arena_cache).
    if (cfg_.reuse_arenas && end.status != -1) arena_cache::here().give(std::move(s.shared));
  }
  for (auto& r : retired_) (void)finish(r.pid, r.watch, std::max(deadline, r.deadline_ns));
  retired_.clear();
}

inline worker_end engine::finish(os::pid_type pid, const os::process_watch_handle& watch,
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
    if (watch && !os::ended_within(watch, left_ms)) os::signal_process(watch, pid, os::kill_signal);
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

inline void engine::retire(slot& s) {
  retired r;
  r.pid = s.pid;
  r.watch = std::move(s.watch);
  r.deadline_ns = os::monotonic_ns() + end_grace_ns();
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

inline void engine::collect_retired() {
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

inline void engine::end_worker(slot& s) {
  if (s.stopping == stop_reason::none || s.stopping == stop_reason::cancel) {
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
  s.shared.reset();
  s.reader.reset();
  const std::size_t i = index_of(s);

  if (s.stopping == stop_reason::replace) {
    // None of its jobs' doing: they go back to the queue, in order.
    core_.requeue(core_.take_lane(i));
    s.relaunch = cfg_.keep_workers;
    return;
  }
  if (!s.greeted && restart_after_early_death(s, status)) {
    // Killed before it was ready, while others of this engine started well: a start that
    // was cut short (killed from outside, or by a sibling), not a start that cannot work.
    // Its jobs never ran (a worker runs none before it is ready): they go back to the queue.
    core_.requeue(core_.take_lane(i));
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
      why = "parallel: a worker process (pid " + std::to_string(pid) + ") " +
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
    core_.fail_all(core_.take_lane(i), make);
    core_.fail_pending(make);
    return;
  }

  // Which job was running: the worker's started_seq. Earlier ones whose results never came
  // (they were buffered in the worker) and later ones go back to the queue, in order.
  const auto& jobs = s.jobs->in_flight;
  const auto running = std::find_if(jobs.begin(), jobs.end(),
                                    [started](const auto& j) { return j->seq == started; });
  const job* culprit = running == jobs.end() ? nullptr : running->get();
  std::exception_ptr error;
  if (culprit != nullptr) {
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
  }
  core_.lose(i, culprit, std::move(error));
  s.relaunch = cfg_.keep_workers;
}

inline bool engine::restart_after_early_death(const slot& s, int status) {
  if (!started_well_ || !s.startup_error.empty() || s.stopping != stop_reason::none ||
      status == -1 || !os::ended_by_signal(status) || early_restarts_ >= max_early_restarts)
    return false;
  ++early_restarts_;
  return true;
}

inline worker_end engine::reap(os::pid_type pid) {
  if (cfg_.reaper) return cfg_.reaper(pid);
  return {os::wait_for(pid, true), {}};
}

inline cancel_outcome engine::withdraw_job(const job_sink* sink, bool kill) {
  if (withdraw(sink)) return cancel_outcome::before_start;
  if (!kill) return cancel_outcome::refused;
  const auto [i, j] = core_.find_in_flight(sink);
  if (j == nullptr) return cancel_outcome::refused;  // done: its result is on its way
  slot& s = slots_[i];
  if (s.pid < 0 || s.shared == nullptr ||
      s.shared->control().started_seq.load(std::memory_order_acquire) != j->seq)
    return cancel_outcome::refused;  // finished (its result is in the ring)
  j->sink = nullptr;  // what the worker still sends for it is dropped, and its end fails nothing
  stop_worker(s, stop_reason::cancel, {});
  return cancel_outcome::killed;
}

inline void engine::stop_worker(slot& s, stop_reason why, std::string message) {
  if (s.stopping != stop_reason::none) return;
  s.stopping = why;
  s.stop_message = std::move(message);
  os::signal_process(s.watch, s.pid, os::kill_signal);
}

}  // namespace parallel::detail::ipc
