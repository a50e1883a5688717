// ipc::engine, continued (engine.hpp includes it): deadlines, each computed the same
// way by check_timeouts() (has it passed?) and next_deadline_ms() (how long may the loop
// sleep?): a worker's handshake, its becoming ready (the pool's initializer), the item a
// worker runs, and another try at a start that failed. The loop sleeps until the nearest one;
// nothing here polls.
#pragma once

#include "engine_class.hpp"

namespace parallel::detail::ipc {

inline engine::start_limit engine::start_deadline(const slot& s) const noexcept {
  start_limit best;
  if (cfg_.start_timeout.count() > 0) {
    best.limit_ms = static_cast<std::uint64_t>(cfg_.start_timeout.count());
    best.at_ns = s.alive_ns + best.limit_ms * ns_per_ms;
  }
  for (const auto& j : s.jobs->in_flight) {
    if (j->timeout.count() <= 0 || j->sink == nullptr) continue;
    const auto limit = static_cast<std::uint64_t>(j->timeout.count());
    const std::uint64_t at = std::max(s.alive_ns, j->sent_ns) + limit * ns_per_ms;
    if (best.at_ns == 0 || at < best.at_ns) best = {at, limit, true};
  }
  return best;
}

inline void engine::check_timeouts() {
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
            "parallel: a worker process (pid " + std::to_string(s.pid) + ") was not ready within " +
                std::to_string(limit.limit_ms) +
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

inline const job* engine::running_job(const slot& s) const noexcept {
  const std::uint64_t started = s.shared->control().started_seq.load(std::memory_order_acquire);
  for (const auto& j : s.jobs->in_flight)
    if (j->seq == started) return j.get();
  return nullptr;
}

inline std::uint64_t engine::moving_due_ns() const noexcept {
  const bool idle = std::any_of(slots_.begin(), slots_.end(), [](const slot& s) {
    return s.pid >= 0 && s.greeted && s.stopping == stop_reason::none && s.jobs->live() == 0;
  });
  const bool queued = std::any_of(slots_.begin(), slots_.end(),
                                  [](const slot& s) { return s.jobs->in_flight.size() >= 2; });
  if (!idle || !queued) return 0;
  const std::uint64_t now = os::monotonic_ns();
  std::uint64_t first = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (const std::uint64_t due = core_.moving_due_ns(i, now);
        due != 0 && (first == 0 || due < first))
      first = due;
  return first;
}

inline std::uint64_t engine::retry_due_ns() const noexcept {
  std::uint64_t failed = 0;  // the earliest failure of a slot still empty
  for (const auto& s : slots_)
    if (s.pid < 0 && s.start_failed_ns != 0 && (failed == 0 || s.start_failed_ns < failed))
      failed = s.start_failed_ns;
  if (failed == 0) return 0;
  const bool work_waits =
      core_.pending() > 0 || std::any_of(slots_.begin(), slots_.end(), [](const slot& s) {
        return s.pid >= 0 && s.jobs->live() >= 2;
      });
  return work_waits ? failed + start_retry_ns : 0;
}

inline int engine::next_deadline_ms() const noexcept {
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
    for (const auto& j : s.jobs->in_flight) {
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
  if (const std::uint64_t due = moving_due_ns(); due != 0) until(due);
  if (const std::uint64_t due = retry_due_ns(); due != 0) until(due);
  if (best == std::numeric_limits<std::uint64_t>::max()) return std::numeric_limits<int>::max();
  // Rounded up: 300 us left must not become a wait of 0 ms, which would spin.
  return static_cast<int>(std::min<std::uint64_t>((best + ns_per_ms - 1) / ns_per_ms, 1u << 30));
}

}  // namespace parallel::detail::ipc
