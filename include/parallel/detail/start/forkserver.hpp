// start::forkserver: a single-threaded server process, spawned on first use, that forks the
// workers on request. A worker forked from it copies a process that has one thread and holds no
// lock, however many threads the caller runs (the hazard of plain fork). The server stays for
// reuse and ends with its caller (EOF on its channel, or a changed parent pid).
//
// The caller and the server talk over one private SOCK_SEQPACKET pair. A request carries the new
// worker's channel and arena as descriptors (SCM_RIGHTS) and the arena's layout (the pool's
// hooks are in the arena: hooks.hpp); the server
// answers with the worker's pid. The server is the workers' parent, so it reaps them and
// reports each exit status; the caller watches its workers through pidfds as usual and asks the
// client for the status of one that ended.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "../../errors.hpp"
#include "../ipc/arena.hpp"
#include "../ipc/engine.hpp"
#include "../ipc/identity.hpp"
#include "../ipc/worker.hpp"
#include "../linux/process.hpp"
#include "../linux/spawn.hpp"

namespace parallel::detail {

namespace forkserver_wire {

inline constexpr std::uint32_t fork_request = 1;
inline constexpr std::uint32_t forked = 2;
inline constexpr std::uint32_t exited = 3;
inline constexpr std::uint32_t fork_failed = 4;
inline constexpr std::size_t max_message = 8192;

struct request {
  std::uint32_t kind = fork_request;
  std::uint32_t reserved = 0;
  std::uint64_t ring_bytes = 0;
  std::uint64_t hooks_bytes = 0;      // the arena's hooks area (arena::hooks_area)
  std::uint64_t ignored_signals = 0;  // os::ignored_signals() of the caller: its workers' too
};

struct reply {
  std::uint32_t kind = 0;
  std::int32_t value = 0;  // exit status (exited) or errno (fork_failed)
  std::int64_t pid = 0;
};

}  // namespace forkserver_wire

/// The server's loop; spawn_main runs it in the process spawned as the server. Never returns.
[[noreturn]] inline void run_forkserver(os::pid_type parent) {
  using namespace forkserver_wire;
  const int control = os::spawned_channel_fd;
  os::open_standard_fds();  // the descriptors it receives must not become a worker's stdout
  // Ctrl-C reaches the whole process group: the server is not the caller's to interrupt (it
  // ends with its caller), and its workers get the caller's own disposition with each request.
  os::ignore_interrupts();
  os::fd_handle signals;
  try {
    signals = os::child_signals();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parallel: forkserver cannot start: %s\n", e.what());
    os::exit_now(70);
  }
  const os::pid_type self = os::current_pid();
  char buffer[max_message];
  for (;;) {
    os::poll_entry polls[2] = {{control, os::poll_in, 0}, {signals.get(), os::poll_in, 0}};
    int ready = 0;
    try {
      ready = os::poll_fds(polls, 2, 500);
    } catch (...) {
      os::exit_now(70);
    }
    if (!os::parent_is(parent)) os::exit_now(0);  // the caller is gone: so are we
    if (ready == 0) continue;
    if (polls[1].revents != 0) {
      os::drain_child_signals(signals.get());
      for (auto [pid, status] = os::reap_any(); pid != 0; std::tie(pid, status) = os::reap_any()) {
        const reply r{exited, status, pid};
        if (!os::send_message(control, &r, sizeof r, nullptr, 0)) os::exit_now(0);
      }
    }
    if (polls[0].revents == 0) continue;
    os::fd_handle fds[2];
    const std::ptrdiff_t n = os::receive_message(control, buffer, sizeof buffer, fds, 2);
    if (n <= 0) os::exit_now(0);  // the caller closed the channel
    request req;
    if (static_cast<std::size_t>(n) < sizeof req) continue;
    std::memcpy(&req, buffer, sizeof req);
    if (req.kind != fork_request || sizeof req != static_cast<std::size_t>(n)) continue;
    if (!fds[0] || !fds[1]) {
      // The kernel drops descriptors this process has no room for (MSG_CTRUNC): the server
      // inherited its caller's descriptor limit. The caller waits for an answer: it gets one.
      const reply r{fork_failed, EMFILE, -1};
      if (!os::send_message(control, &r, sizeof r, nullptr, 0)) os::exit_now(0);
      continue;
    }
    std::fflush(nullptr);
    const os::pid_type pid = os::try_fork();
    if (pid == 0) {
      os::close_descriptor(control);
      signals.reset();
      os::unblock_child_signals();
      os::become_worker(self);
      os::adopt_ignored_signals(req.ignored_signals);
      const int channel = fds[0].release();
      std::optional<ipc::arena> shared;
      try {
        shared.emplace(ipc::arena::adopt_t{}, fds[1].release(), req.ring_bytes, req.hooks_bytes);
      } catch (const std::exception& e) {
        ipc::refuse_to_start(channel, e.what());
      }
      ipc::worker_main(channel, *shared, &ipc::run_shipped);
    }
    const int fork_errno = errno;
    // The server's copies of the worker's channel and arena go before the caller hears of the
    // worker: the worker's end must be its alone, or its exit (or its closing the channel) would
    // not be an end of stream for the caller until this loop came round.
    fds[0].reset();
    fds[1].reset();
    const reply r = pid > 0 ? reply{forked, 0, pid} : reply{fork_failed, fork_errno, -1};
    if (!os::send_message(control, &r, sizeof r, nullptr, 0)) os::exit_now(0);
  }
}

/// Appended to the caller's error when its forkserver ended (or hung) before it ever answered.
inline constexpr const char* forkserver_hint =
    "; the forkserver runs this executable again: make parallel::spawn_main(argc, argv) the "
    "first statement of main (the twin of Python's `if __name__ == '__main__':` guard)";

/// The caller's side: one server per process, started on first use, shared by every pool.
class forkserver_client {
 public:
  static forkserver_client& instance() {
    static const bool registered = [] {
      // A child forked from this process must not talk to this process's server: it forgets
      // the client (closing its end of the channel) and starts a server of its own if needed.
      // The old client is left as it was (a thread of the parent may have held its mutex).
      os::on_fork(nullptr, nullptr, [] {
        if (forkserver_client* old = slot().exchange(nullptr)) old->control_.reset();
      });
      return true;
    }();
    static_cast<void>(registered);
    forkserver_client* client = slot().load(std::memory_order_acquire);
    if (client == nullptr) {
      auto* made = new forkserver_client();  // lives as long as the process, like the server
      if (slot().compare_exchange_strong(client, made, std::memory_order_acq_rel))
        client = made;
      else
        delete made;
    }
    return *client;
  }

  /// Asks the server for a worker on `channel` and `arena`; returns its pid. Throws
  /// spawn_error when the server refuses, is gone, or does not answer within reply_timeout_ms.
  os::pid_type start_worker(int channel, const ipc::arena& shared) {
    using namespace forkserver_wire;
    std::lock_guard lock(mutex_);
    ensure_running();
    request req;
    req.ring_bytes = shared.ring_size();
    req.hooks_bytes = shared.hooks_area();
    req.ignored_signals = os::ignored_signals();
    const std::string message(reinterpret_cast<const char*>(&req), sizeof req);
    const int fds[2] = {channel, shared.handle()};
    // A server found dead on the way (killed, or Ctrl-C in a program that handles it) is
    // replaced once, at once: the workers it started are gone, this request need not fail.
    for (int attempt = 0;; ++attempt) {
      const bool fresh = !control_;
      ensure_running();
      const bool retry = !fresh && attempt == 0;
      if (!os::send_message(control_.get(), message.data(), message.size(), fds, 2)) {
        server_lost("could not be sent a request");
        if (retry) continue;
        throw spawn_error("parallel: the forkserver " + lost_note_ +
                          "; it is started again on next use");
      }
      const std::uint64_t deadline = os::monotonic_ns() + reply_timeout_ms * 1'000'000ull;
      for (;;) {
        std::optional<reply> r;
        try {
          r = next_reply(deadline);
        } catch (const spawn_error&) {
          if (retry) break;
          throw;
        }
        if (!r) {
          server_lost("did not answer a request within " + std::to_string(reply_timeout_ms) +
                      " ms and was stopped");
          throw spawn_error("parallel: the forkserver " + lost_note_ +
                            "; it is started again on next use");
        }
        if (r->kind == forked && r->pid > 0) {
          const auto pid = static_cast<os::pid_type>(r->pid);
          server_of_[pid] = epoch_;
          return pid;
        }
        if (r->kind == forked) throw spawn_error("parallel: the forkserver reported no worker pid");
        if (r->kind == fork_failed && r->value == EMFILE)
          throw spawn_error(
              "parallel: the forkserver (pid " + std::to_string(server_) +
              ") could not take a new worker's descriptors (EMFILE): it has reached its limit of "
              "open descriptors (RLIMIT_NOFILE), which it had from this process when it started; "
              "raise the limit (ulimit -n, setrlimit) before the first forkserver pool starts, or "
              "start fewer workers");
        if (r->kind == fork_failed)
          throw spawn_error(os::describe_errno("the forkserver's start of a worker", r->value));
      }
    }
  }

  /// How a worker ended, as its server reported it. The workers of a server that has ended
  /// died with it (PR_SET_PDEATHSIG): they are reported at once, killed, with a note, never
  /// waited for. Waits at most status_timeout_ms for a report (status -1 when none came).
  ipc::worker_end wait_status(os::pid_type pid) {
    std::lock_guard lock(mutex_);
    const auto served = server_of_.find(pid);
    const std::uint64_t epoch = served != server_of_.end() ? served->second : epoch_;
    const std::uint64_t deadline = os::monotonic_ns() + status_timeout_ms * 1'000'000ull;
    for (;;) {
      if (auto it = exited_.find(pid); it != exited_.end()) {
        const int status = it->second;
        exited_.erase(it);
        server_of_.erase(pid);
        return {status, {}};
      }
      if (!control_ || epoch != epoch_) {
        server_of_.erase(pid);
        return {os::kill_signal,
                "its forkserver " + lost_note_ + ", and the workers it started ended with it"};
      }
      try {
        if (!next_reply(deadline)) return {-1, "the forkserver did not report how it ended"};
      } catch (const spawn_error&) {
        // The server is gone: the next round reports the worker as ended with it.
      }
    }
  }

 private:
  static constexpr std::uint64_t reply_timeout_ms = 10'000;
  static constexpr std::uint64_t status_timeout_ms = 2'000;

  static std::atomic<forkserver_client*>& slot() {
    static std::atomic<forkserver_client*> client{nullptr};
    return client;
  }

  void ensure_running() {
    if (control_) return;
    auto [mine, theirs] = os::message_socket_pair();
    server_ = os::spawn_self({theirs.get()}, "fs:1:" + std::to_string(os::current_pid()));
    control_ = os::library_fd(std::move(mine));
    answered_ = false;
  }

  /// Reads one reply, waiting until `deadline_ns` at most (nothing: none came in time); exit
  /// reports are kept for wait_status. Throws spawn_error when the server is gone.
  std::optional<forkserver_wire::reply> next_reply(std::uint64_t deadline_ns) {
    using namespace forkserver_wire;
    const std::uint64_t now = os::monotonic_ns();
    const int left_ms =
        now >= deadline_ns ? 0 : static_cast<int>((deadline_ns - now + 999'999) / 1'000'000);
    if (!os::readable_within(control_.get(), left_ms)) {
      // readable_within() says false on a hang-up too: tell the two apart.
      os::poll_entry entry{control_.get(), os::poll_in, 0};
      if (os::poll_fds(&entry, 1, 0) <= 0 || (entry.revents & os::poll_hangup) == 0)
        return std::nullopt;
    }
    reply r;
    const std::ptrdiff_t n = os::receive_message(control_.get(), &r, sizeof r, nullptr, 0);
    if (n != static_cast<std::ptrdiff_t>(sizeof r)) {
      server_lost("ended");
      throw spawn_error("parallel: the forkserver " + lost_note_ +
                        "; it is started again on next use");
    }
    answered_ = true;
    if (r.kind == exited) exited_[static_cast<os::pid_type>(r.pid)] = r.value;
    return r;
  }

  /// The server is gone or useless: it is killed (if it still runs) and reaped, and what is
  /// known of its end goes into lost_note_. Its workers ended with it; a new server is started
  /// on next use, and workers of the old one are never waited for.
  void server_lost(const std::string& what) {
    control_.reset();
    lost_note_ = "(pid " + std::to_string(server_) + ") " + what;
    if (server_ > 0) {
      os::send_signal(server_, os::kill_signal);  // our child, not reaped yet
      try {
        const int status = os::wait_for(server_, true);
        if (what == "ended") lost_note_ += ": it " + os::describe_status(status);
      } catch (...) {
      }
    }
    // A server that never answered most likely never reached the server loop: it is this
    // executable run again, and its main() did not begin with spawn_main.
    if (!answered_) lost_note_ += " before it ever answered" + std::string(forkserver_hint);
    server_ = -1;
    ++epoch_;
  }

  std::mutex mutex_;
  os::library_fd control_;
  os::pid_type server_ = -1;
  std::uint64_t epoch_ = 0;  // which server: bumped each time one is lost
  std::string lost_note_;    // how the last one was lost
  bool answered_ = false;    // the running server has answered at least once
  std::map<os::pid_type, int> exited_;
  std::map<os::pid_type, std::uint64_t> server_of_;  // a worker's server's epoch
};

}  // namespace parallel::detail
