// ipc::engine, continued (engine.hpp includes it): the loop's round (prepare_wait,
// then wait_now without the engine, then finish_wait) and the rounds of a caller that drives the
// engine while the loop sleeps (README.md: who drives a pool's engine).
#pragma once

#include "engine_class.hpp"

namespace parallel::detail::ipc {

inline int engine::prepare_wait(int wait_ms, const os::wakeup* wake, mailbox_bell* mail) {
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

inline bool engine::finish_wait(int ready, mailbox_bell* mail) {
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

inline void engine::send_round() {
  driving_ = true;
  sending_only_ = true;
  struct restore {
    engine& e;
    ~restore() { e.driving_ = e.sending_only_ = false; }
  } guard{*this};
  dispatch();
  (void)flush_all();
  // As end_driving(), for jobs no caller will drive (one that will sees to it as it lets go).
  if (!worth_driving() && moving_due_ns() != 0) needs_loop_ = true;
  // Jobs that now wait for a worker whose start failed: only the loop starts workers, and it
  // may sleep with no deadline, computed before they came.
  if (retry_due_ns() != 0) needs_loop_ = true;
}

inline std::uint64_t engine::drive_round() {
  const std::uint64_t before = handled_;
  dispatch();
  (void)flush_all();
  for (auto& s : slots_) drain(s);
  return handled_ - before;
}

inline void engine::end_driving() {
  callers_watch(false);
  for (auto& s : slots_) drain(s);
  (void)flush_all();
  driving_ = false;
  // The loop may sleep with no deadline, computed before these jobs were sent.
  if (moving_due_ns() != 0 || retry_due_ns() != 0) needs_loop_ = true;
}

inline bool engine::worth_driving() const noexcept {
  if (core_.typical_job_ns() > spin_job_ns) return false;
  if (core_.pending() > 0) return true;
  for (const auto& s : slots_)
    if (s.pid >= 0 && s.rings && s.greeted && s.jobs->live() > 0) return true;
  return false;
}

}  // namespace parallel::detail::ipc
