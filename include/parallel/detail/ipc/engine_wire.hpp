// ipc::engine, continued (engine.hpp includes it): sending tasks and reading
// results. A task goes into its worker's shared-memory ring (a mark there and the bytes on the
// socket when it does not fit); results come back the same way, in the order the tasks were sent.
// Which worker gets the next job is the job core's choice (job_core.hpp); rebalance() takes
// back queued jobs a worker has not started when another worker idles.
#pragma once

#include "engine_class.hpp"

namespace parallel::detail::ipc {

inline void engine::rebalance() {
  std::uint64_t now = 0;  // read once a worker idles (the clock costs ~25 ns on a VM)
  for (auto& thief : slots_) {
    if (thief.pid < 0 || !thief.greeted || thief.stopping != stop_reason::none || retiring(thief) ||
        thief.jobs->live() != 0)
      continue;
    if (now == 0) now = os::monotonic_ns();
    slot* victim = nullptr;
    std::size_t most = 0;
    for (auto& v : slots_) {
      if (&v == &thief || v.pid < 0 || !v.shared || retiring(v)) continue;
      const std::size_t live = v.jobs->live();
      const std::size_t queued = v.greeted ? (live > 0 ? live - 1 : 0) : live;
      // Jobs packed there on purpose stay while they are on time (job_core::worth_moving).
      if (queued > most && core_.worth_moving(static_cast<std::size_t>(&v - slots_.data()), now)) {
        most = queued;
        victim = &v;
      }
    }
    if (victim == nullptr) return;  // nothing queued anywhere
    std::size_t take = (most + 1) / 2;
    std::deque<std::unique_ptr<job>> back;
    auto& held = victim->jobs->in_flight;
    for (auto it = held.rbegin(); it != held.rend() && take > 0; ++it) {
      std::unique_ptr<job>& j = *it;
      if (j->withdrawn) continue;
      if (!victim->shared->control().withdraw(j->seq)) break;  // started: so did those before
      --take;
      auto mark = std::make_unique<job>();
      mark->id = j->id;
      mark->seq = j->seq;
      mark->sent_ns = j->sent_ns;
      mark->withdrawn = true;
      back.push_front(std::exchange(j, std::move(mark)));
    }
    // Ahead of the rest, in their order: they were due before anything still pending. New
    // ids: the victim answers the marks under the old ones.
    core_.requeue(std::move(back), /*renumber=*/true);
    if (core_.pending() > 0) return;  // dispatch() gives them out, then looks again
  }
}

inline void engine::dispatch() {
  if (core_.next() == nullptr) rebalance();
  if (core_.next() == nullptr) return;
  const std::uint64_t now = os::monotonic_ns();
  const std::uint64_t round = ++dispatch_round_;
  // With no worker running, an empty slot is tried at once, whenever it last failed.
  const bool none_running = running_workers() == 0;
  const auto fits = [&](std::size_t i) {
    const slot& s = slots_[i];
    if (s.pid >= 0 && (s.stopping != stop_reason::none || retiring(s))) return job_core::fit::no;
    if (s.pid < 0 && s.start_failed_ns != 0 &&
        (s.failed_round == round || (!none_running && !start_retry_due(s, now))))
      return job_core::fit::no;
    if (s.jobs->in_flight.size() + 1 >= control_block::claim_slots) return job_core::fit::no;
    return s.pid < 0 ? job_core::fit::empty : job_core::fit::ready;
  };
  while (job* next = core_.next()) {
    // The worker that could start a job soonest, within the queue's budget (job_core).
    const std::size_t i = core_.least_busy(*next, now, fits);
    if (i == job_core::none) break;
    slot& best = slots_[i];
    if (best.pid < 0 && driving_) {  // only the loop starts workers
      needs_loop_ = true;
      break;
    }
    if (best.pid < 0 && !try_launch(best)) {
      best.failed_round = round;
      continue;
    }
    if (best.out_sent == best.out.size()) {
      best.out.clear();
      best.out_sent = 0;
    }
    const std::size_t mark = best.out.size();
    best.shared->control().offer(best.sent + 1);  // before the worker can see the task
    try {
      if (!send_task(best, *next)) break;  // its ring is full: the job waits for the next round
    } catch (...) {  // no memory for the frame: this job fails, the worker goes on
      best.out.resize(mark);
      if (sending_only_) {  // no sink may be called here: the loop fails it
        needs_loop_ = true;
        break;
      }
      core_.fail_next(std::current_exception());
      continue;
    }
    job& sent = core_.give_next(i, now);
    sent.seq = ++best.sent;
    if (driving_ && sent.timeout.count() > 0) needs_loop_ = true;  // its deadline is the loop's
  }
  ring_task_bells();
  // Jobs wait, and no slot has a worker: every start failed just now. They fail rather than
  // wait for a worker that may never come; a later call tries the slots again.
  if (core_.pending() > 0 &&
      std::none_of(slots_.begin(), slots_.end(), [](const slot& s) { return s.pid >= 0; })) {
    if (driving_) {
      needs_loop_ = true;
      return;
    }
    const std::string why = last_start_error_;
    core_.fail_pending([&why] { return std::make_exception_ptr(spawn_error(why)); });
  }
}

inline bool engine::send_task(slot& s, const job& j) {
  if (s.rings && s.tasks.put(frame_type::task, frame_flags::none, j.id, j.payload, j.borrowed))
    return true;
  const std::size_t mark = s.out.size();
  append_frame(s.out, frame_type::task, frame_flags::none, j.id, j.payload, j.borrowed);
  if (!s.rings) return true;
  if (s.tasks.put(frame_type::task, frame_flags::payload_on_channel, j.id, {})) return true;
  s.out.resize(mark);
  return false;
}

inline void engine::ring_task_bells() {
  for (auto& s : slots_) {
    if (s.pid < 0 || !s.rings || !s.tasks.uncommitted()) continue;
    s.tasks.commit();
    if (s.shared->control().worker_bell.must_ring()) {
      if (s.out_sent == s.out.size()) {
        s.out.clear();
        s.out_sent = 0;
      }
      const header_bytes bell = encode_header(frame_type::doorbell, frame_flags::none, 0, 0);
      s.out.insert(s.out.end(), bell.begin(), bell.end());
    }
  }
}

inline bool engine::results_ready() const noexcept {
  for (const auto& s : slots_)
    if (s.pid >= 0 && s.rings && s.results.ready()) return true;
  return false;
}

inline bool engine::spin_worth_it(bool callers) const noexcept {
  if (core_.typical_job_ns() > spin_job_ns) return false;
  if (callers && os::monotonic_ns() - core_.last_result_ns() < engine_spin_ns) return true;
  for (const auto& s : slots_)
    if (s.pid >= 0 && s.rings && s.greeted && s.jobs->live() > 0) return true;
  return false;
}

inline bool engine::retiring(const slot& s) const noexcept {
  return cfg_.max_tasks_per_child != 0 && s.sent >= cfg_.max_tasks_per_child;
}

inline bool engine::flush_all() {
  bool ended = false;
  for (auto& s : slots_) {
    if (s.pid >= 0 && s.out_sent < s.out.size() && !flush(s)) {
      if (driving_) {  // the worker is ending: the loop sees to it
        needs_loop_ = true;
        continue;
      }
      end_worker(s);
      ended = true;
    }
    // A driver does not wait for the socket to take the rest: the loop, watching for it.
    if (driving_ && s.pid >= 0 && s.out_sent < s.out.size()) needs_loop_ = true;
  }
  return ended;
}

inline bool engine::flush(slot& s) {
  while (s.out_sent < s.out.size()) {
    const std::ptrdiff_t n =
        s.channel.write_some(s.out.data() + s.out_sent, s.out.size() - s.out_sent);
    if (n < 0) return false;
    if (n == 0) return true;
    s.out_sent += static_cast<std::size_t>(n);
  }
  s.out.clear();
  s.out_sent = 0;
  return true;
}

inline void engine::receive(slot& s, bool draining) {
  if (!incoming_) incoming_.reset(new std::byte[incoming_size]);
  for (;;) {
    const std::ptrdiff_t n = s.channel.read_some(incoming_.get(), incoming_size);
    if (n == -2) break;  // nothing more now
    if (n <= 0) {        // end of stream: the worker is ending
      try {
        s.reader->finish();
      } catch (const parallel::error& e) {
        if (s.stopping == stop_reason::none) s.stopping = stop_reason::protocol;
        s.stop_message = e.what();
      }
      handle_frames(s);
      if (!draining && s.pid >= 0) end_worker(s);
      return;
    }
    try {
      s.reader->feed(std::span(incoming_.get(), static_cast<std::size_t>(n)));
    } catch (...) {  // no memory for a result's bytes
      drop_stream(s, std::current_exception());
      return;
    }
    if (!handle_frames(s)) return;
    // A short read means the socket is drained for now (poll says when more comes); saves a
    // read that would only say EAGAIN. Draining a dead worker reads on to the end.
    if (!draining && static_cast<std::size_t>(n) < incoming_size) break;
  }
}

inline void engine::drop_stream(slot& s, std::exception_ptr error) {
  (void)handle_frames(s);  // the frames that arrived whole still count
  if (s.pid < 0 || s.stopping != stop_reason::none) return;
  // The failed bytes belong to the last result whose header was read.
  auto& held = s.jobs->in_flight;
  const auto at = std::find_if(held.begin(), held.end(),
                               [&s](const auto& j) { return j->id == s.last_result_id; });
  if (at != held.end()) {
    std::unique_ptr<job> j = std::move(*at);
    held.erase(at);
    core_.fail(*j, std::move(error));
  }
  stop_worker(s, stop_reason::replace, {});
}

inline bool engine::handle_frames(slot& s) {
  for (;;) {
    if (s.pid < 0 || s.stopping == stop_reason::protocol || s.stopping == stop_reason::replace)
      return false;
    std::optional<frame> f;
    try {
      f = s.reader->next();
      if (!f) return true;
      if (f->type == frame_type::doorbell) continue;   // it woke the loop: the rings are read
      if (s.rings && f->type == frame_type::result) {  // its mark in the ring says when
        s.channel_results.push_back(std::move(*f));
        continue;
      }
      if (f->type == frame_type::result) --s.results_parsed;
      handle(s, f->type, f->flags, f->task_id, f->payload);
      if (f->type == frame_type::result && retiring(s) && s.jobs->in_flight.empty()) {
        if (driving_) {  // the loop retires it (retire_finished)
          needs_loop_ = true;
          return true;
        }
        retire(s);
      }
    } catch (const std::exception& e) {
      stop_worker(s, stop_reason::protocol, e.what());
      return false;
    }
  }
}

inline void engine::drain(slot& s) {
  while (s.pid >= 0 && s.rings && s.stopping != stop_reason::protocol &&
         s.stopping != stop_reason::replace) {
    try {
      const std::optional<frame_ring::record> r = s.results.peek(default_max_payload);
      if (!r) return;
      if (r->header.type != frame_type::result)
        wire::protocol_error(std::string("a ") + to_string(r->header.type) +
                             " frame in a worker's result ring");
      if (has_flag(r->header.flags, frame_flags::payload_on_channel)) {
        // The worker wrote the result whole to the socket before this mark: it is there.
        if (s.channel_results.empty()) receive(s, /*draining=*/true);
        if (s.pid < 0 || s.channel_results.empty() || s.stopping == stop_reason::protocol ||
            s.stopping == stop_reason::replace)
          return;
        const frame f = std::move(s.channel_results.front());
        s.channel_results.pop_front();
        if (f.task_id != r->header.task_id)
          wire::protocol_error("a result's mark in the ring names task " +
                               std::to_string(r->header.task_id) + ", the socket brought " +
                               std::to_string(f.task_id));
        handle(s, f.type, f.flags, f.task_id, f.payload);
      } else {
        handle(s, r->header.type, r->header.flags, r->header.task_id, r->payload);
      }
      s.results.consume(*r);
      ++handled_;
    } catch (const std::exception& e) {
      stop_worker(s, stop_reason::protocol, e.what());
      return;
    }
    if (retiring(s) && s.jobs->in_flight.empty()) {
      if (driving_) {  // the loop retires it (retire_finished)
        needs_loop_ = true;
        return;
      }
      retire(s);
      return;
    }
    // The worker (or another) may now have room: give out waiting jobs before the next
    // result is decoded, which can take long (a large result): a worker never waits for the
    // decoding of another's results.
    if (core_.pending() > 0) {
      dispatch();
      if (flush_all()) return;  // a worker ended: the next round sees to it
    }
  }
}

inline void engine::handle(slot& s, frame_type type, frame_flags flags, std::uint64_t task_id,
                           std::span<const std::byte> payload) {
  if (type == frame_type::hello) {
    decoder in(payload);
    (void)in.read<std::uint64_t>();
    const code_location theirs = decode_location(in);
    const bool ready = in.read<std::uint8_t>() != 0;
    if (!(theirs == anchor_location())) {
      s.startup_error =
          "parallel: a worker process runs a different executable than its caller (handshake: "
          "the library's anchor function is at a different offset); workers must run this "
          "very build of the program";
      stop_worker(s, stop_reason::protocol, s.startup_error);
      return;
    }
    if (!s.alive) s.alive_ns = os::monotonic_ns();
    s.alive = true;     // the handshake timer stops: it answered
    s.greeted = ready;  // with an initializer, ready once that has run
    if (ready) {
      started_well_ = true;
      early_restarts_ = 0;
    }
    return;
  }
  if (type == frame_type::error) {
    // The worker cannot start (its initializer threw, after the hello): it ends next, and its
    // jobs fail with this message rather than going to another worker that would fail alike.
    decoder in(payload);
    s.startup_error = in.read<std::string>();
    s.greeted = false;
    return;
  }
  if (type != frame_type::result) {
    wire::protocol_error(std::string("a worker sent a ") + to_string(type) + " frame");
  }
  if (!s.greeted) {
    // A result in the ring may be read before the hello that the worker wrote to the socket
    // first: read the socket now (the hello is there).
    if (s.rings) receive(s, /*draining=*/true);
    if (!s.greeted) wire::protocol_error("a worker sent a result before its handshake");
  }
  const auto& held = s.jobs->in_flight;
  if (!held.empty() && held.front()->id == task_id &&
      has_flag(flags, frame_flags::withdrawn) != held.front()->withdrawn) {
    wire::protocol_error(std::string("a worker ") + (held.front()->withdrawn ? "ran" : "skipped") +
                         " task " + std::to_string(task_id) + ", which was " +
                         (held.front()->withdrawn ? "withdrawn" : "not withdrawn"));
  }
  std::unique_ptr<job> j = core_.take_result(index_of(s), task_id, os::monotonic_ns());
  if (j->withdrawn) return;
  // A result that breaks the layout fails its job and is thrown: the caller of handle() stops
  // the worker. max_tasks_per_child: when this worker has done its share, the caller of
  // handle() retires it once the frame is given back (a fresh one takes its place in the next
  // round: a start that fails must not read as this worker's protocol error).
  core_.settle(*j, payload);
}

inline void engine::check_header(slot& s, const frame_header& h) {
  if (h.type != frame_type::result) return;
  s.last_result_id = h.task_id;
  const auto& held = s.jobs->in_flight;
  if (s.rings) {  // a result too large for the ring: any of the jobs in flight
    if (std::none_of(held.begin(), held.end(), [&h](const auto& j) { return j->id == h.task_id; }))
      wire::protocol_error("a worker sent the result of task " + std::to_string(h.task_id) +
                           ", which it was not running");
    return;
  }
  const std::size_t position = s.results_parsed;
  if (position >= held.size() || held[position]->id != h.task_id) {
    wire::protocol_error("a worker sent the result of task " + std::to_string(h.task_id) +
                         ", which it was not running");
  }
  ++s.results_parsed;
}

}  // namespace parallel::detail::ipc
