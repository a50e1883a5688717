// start::forkserver: a single-threaded server process, spawned on first use, that forks the
// workers on request. A worker forked from it copies a process that has one thread and holds no
// lock, however many threads the caller runs (the hazard of plain fork). The server stays for
// reuse and ends with its caller (EOF on its channel, or a changed parent pid).
//
// The caller and the server talk over one private SOCK_SEQPACKET pair. A request carries the new
// worker's channel and arena as descriptors (SCM_RIGHTS) and the pool's initializer; the server
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
#include "../posix/process.hpp"
#include "../posix/spawn.hpp"
#include "arena.hpp"
#include "identity.hpp"
#include "worker.hpp"

namespace parallel::detail::ipc {

namespace forkserver_wire {

inline constexpr std::uint32_t fork_request = 1;
inline constexpr std::uint32_t forked = 2;
inline constexpr std::uint32_t exited = 3;
inline constexpr std::uint32_t fork_failed = 4;
inline constexpr std::size_t max_message = 8192;

struct request {
  std::uint32_t kind = fork_request;
  std::uint32_t module_length = 0;  // the initializer's module path follows
  std::uint64_t ring_bytes = 0;
  std::uint64_t init_offset = 0;
  std::uint64_t has_init = 0;
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
    if (req.kind != fork_request || req.module_length > sizeof buffer - sizeof req ||
        sizeof req + req.module_length != static_cast<std::size_t>(n))
      continue;
    if (!fds[0] || !fds[1]) {
      // The kernel drops descriptors this process has no room for (MSG_CTRUNC): the server
      // inherited its caller's descriptor limit. The caller waits for an answer: it gets one.
      const reply r{fork_failed, EMFILE, -1};
      if (!os::send_message(control, &r, sizeof r, nullptr, 0)) os::exit_now(0);
      continue;
    }
    const std::string module(buffer + sizeof req, req.module_length);
    std::fflush(nullptr);
    const os::pid_type pid = ::fork();
    if (pid == 0) {
      ::close(control);
      signals.reset();
      os::unblock_child_signals();
      os::become_worker(self);
      os::adopt_ignored_signals(req.ignored_signals);
      const int channel = fds[0].release();
      arena shared(arena::adopt_t{}, fds[1].release(), req.ring_bytes);
      void (*initializer)() = nullptr;
      if (req.has_init != 0) {
        try {
          initializer = reinterpret_cast<void (*)()>(
              const_cast<void*>(resolve(code_location{module, req.init_offset})));
        } catch (const std::exception& e) {
          refuse_to_start(channel, e.what());
        }
      }
      worker_main(channel, shared, &run_shipped, initializer);
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

  /// Asks the server for a worker on `channel` and `arena`; returns its pid.
  os::pid_type start_worker(int channel, const arena& shared, void (*initializer)()) {
    using namespace forkserver_wire;
    std::lock_guard lock(mutex_);
    ensure_running();
    request req;
    req.ring_bytes = shared.ring_size();
    req.ignored_signals = os::ignored_signals();
    std::string module;
    if (initializer != nullptr) {
      const code_location where = locate(reinterpret_cast<const void*>(initializer));
      req.has_init = 1;
      req.init_offset = where.offset;
      module = where.module;
    }
    req.module_length = static_cast<std::uint32_t>(module.size());
    std::string message(reinterpret_cast<const char*>(&req), sizeof req);
    message += module;
    const int fds[2] = {channel, shared.handle()};
    if (!os::send_message(control_.get(), message.data(), message.size(), fds, 2)) {
      server_lost();
      throw spawn_error("parallel: the forkserver is gone (it could not be sent a request)");
    }
    for (;;) {
      const reply r = next_reply();
      if (r.kind == forked) return static_cast<os::pid_type>(r.pid);
      if (r.kind == fork_failed && r.value == EMFILE)
        throw spawn_error(
            "parallel: the forkserver (pid " + std::to_string(server_) +
            ") could not take a new worker's descriptors (EMFILE): it has reached its limit of "
            "open descriptors (RLIMIT_NOFILE), which it had from this process when it started; "
            "raise the limit (ulimit -n, setrlimit) before the first forkserver pool starts, or "
            "start fewer workers");
      if (r.kind == fork_failed)
        throw spawn_error(os::describe_errno("the forkserver's start of a worker", r.value));
    }
  }

  /// The exit status of a worker that ended (the server reaps it and reports).
  int wait_status(os::pid_type pid) {
    std::lock_guard lock(mutex_);
    for (;;) {
      if (auto it = exited_.find(pid); it != exited_.end()) {
        const int status = it->second;
        exited_.erase(it);
        return status;
      }
      if (!control_) return 9;  // the server is gone, and its workers with it: SIGKILL
      (void)next_reply();
    }
  }

 private:
  static std::atomic<forkserver_client*>& slot() {
    static std::atomic<forkserver_client*> client{nullptr};
    return client;
  }

  void ensure_running() {
    if (control_) return;
    auto [mine, theirs] = os::message_socket_pair();
    server_ = os::spawn_self({theirs.get()}, "fs:1:" + std::to_string(os::current_pid()));
    control_ = os::library_fd(std::move(mine));
  }

  // Reads one reply; exit reports are kept for wait_status.
  forkserver_wire::reply next_reply() {
    using namespace forkserver_wire;
    reply r;
    const std::ptrdiff_t n = os::receive_message(control_.get(), &r, sizeof r, nullptr, 0);
    if (n != static_cast<std::ptrdiff_t>(sizeof r)) {
      server_lost();
      throw spawn_error("parallel: the forkserver ended unexpectedly; it is restarted on next use");
    }
    if (r.kind == exited) exited_[static_cast<os::pid_type>(r.pid)] = r.value;
    return r;
  }

  void server_lost() {
    control_.reset();
    if (server_ > 0) {
      os::send_signal(server_, os::kill_signal);
      try {
        (void)os::wait_for(server_, true);
      } catch (...) {
      }
    }
    server_ = -1;
  }

  std::mutex mutex_;
  os::library_fd control_;
  os::pid_type server_ = -1;
  std::map<os::pid_type, int> exited_;
};

}  // namespace parallel::detail::ipc
