// The caller's end of a worker's channel on POSIX, and the wait over all of them: a non-blocking
// socket and poll(). The engine (ipc/engine.hpp) speaks to channels and wait sets only, so that
// Windows can give it the same contract over overlapped pipes (win32/channel.hpp).
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <utility>
#include <vector>

#include "process.hpp"

namespace parallel::detail::os {

/// The caller's end of a worker's socketpair: non-blocking, in library_fds while open.
class channel {
 public:
  channel() noexcept = default;
  explicit channel(fd_handle fd) : fd_(std::move(fd)) { set_nonblocking(fd_.get(), true); }

  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
  void reset() noexcept { fd_.reset(); }
  int get() const noexcept { return fd_.get(); }

  /// Bytes written, 0 when it would block, -1 when the worker is gone.
  std::ptrdiff_t write_some(const void* data, std::size_t size) noexcept {
    return os::write_some(fd_.get(), data, size);
  }
  /// Bytes read, 0 at end of stream, -1 on error, -2 when nothing has arrived.
  std::ptrdiff_t read_some(void* data, std::size_t size) noexcept {
    return os::read_some(fd_.get(), data, size, true);
  }

 private:
  library_fd fd_;
};

/// A channel and the worker's end of it (CLOEXEC: a starter hands it on explicitly).
struct channel_pair {
  channel mine;
  library_fd theirs;
};

inline channel_pair make_channel() {
  auto [mine, theirs] = socket_pair();
  return {channel(std::move(mine)), library_fd(std::move(theirs))};
}

/// What the engine watches to see a worker end: a pidfd, or nothing where the kernel has none
/// (then the end is seen as EOF on the channel).
using process_watch_handle = library_fd;

inline library_fd watch_process(pid_type pid) noexcept { return library_fd(process_watch(pid)); }

/// Sends `signal` to a worker: through its pidfd when it has one, which names that process and
/// no other even after it ended and its pid was reused (a forkserver's workers are reaped by the
/// server, not by us); by pid otherwise (then it is our child, not yet reaped).
inline void signal_process(const library_fd& watch, pid_type pid, int signal) noexcept {
#if defined(SYS_pidfd_send_signal)
  if (watch) {
    if (::syscall(SYS_pidfd_send_signal, watch.get(), signal, nullptr, 0) == 0 || errno == ESRCH)
      return;  // sent, or the process has ended
  }
#endif
  send_signal(pid, signal);
}

/// True when the watched process ends within `timeout_ms`.
inline bool ended_within(const library_fd& watch, int timeout_ms) noexcept {
  return readable_within(watch.get(), timeout_ms);
}

/// The engine's wait: channels, process watches and a wake-up, in the order they were added;
/// after wait(), readable(k) / writable(k) / any(k) say what happened to entry k. One poll().
class wait_set {
 public:
  void clear() noexcept { polls_.clear(); }
  bool empty() const noexcept { return polls_.empty(); }
  std::size_t size() const noexcept { return polls_.size(); }

  void add_channel(const channel& c, bool want_write) {
    polls_.push_back({c.get(), static_cast<short>(poll_in | (want_write ? poll_out : 0)), 0});
  }
  void add_watch(const library_fd& watch) { polls_.push_back({watch.get(), poll_in, 0}); }
  void add_wakeup(const wakeup& w) { polls_.push_back({w.fd(), poll_in, 0}); }

  /// Waits until something is ready or `timeout_ms` passes (-1: no limit); the number of
  /// entries that are ready (0 after a signal: the caller re-checks its deadlines).
  int wait(int timeout_ms) { return poll_fds(polls_.data(), polls_.size(), timeout_ms); }

  bool readable(std::size_t k) const noexcept {
    return (polls_[k].revents & (poll_in | poll_hangup)) != 0;
  }
  bool writable(std::size_t k) const noexcept { return (polls_[k].revents & poll_out) != 0; }
  bool any(std::size_t k) const noexcept { return polls_[k].revents != 0; }

 private:
  std::vector<poll_entry> polls_;
};

}  // namespace parallel::detail::os
