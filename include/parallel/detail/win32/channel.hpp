// The caller's end of a worker's channel on Windows, and the wait over all of them.
//
// Design note. Anonymous pipes (CreatePipe) cannot do overlapped I/O, and the engine must never
// block on one worker. So a channel is a pipe made with CreateNamedPipeW under a name nobody can
// guess (pid, counter, 64 random bits), as CreatePipe itself does internally, with one instance
// only, remote clients refused, and its client end opened before any child exists: nothing else
// can ever connect. The caller's end is overlapped; the worker's end is a plain blocking handle.
//
// The engine was written for poll(); the channel gives it the same contract. A read is always
// outstanding into the channel's own buffer; "readable" means it completed (or the pipe broke),
// and read_some hands out those bytes and starts the next read. write_some copies the bytes and
// starts an overlapped write: it accepts everything while no write is outstanding and reports
// "would block" (0) while one is. Each channel has one manual-reset event for both directions;
// it is only ever armed by the engine's thread, and wait_set looks at every operation's state
// after the last one was started and before it sleeps, so no completion is missed.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "process.hpp"

namespace parallel::detail::os {

class channel {
  static constexpr DWORD buffer_size = DWORD{256} << 10;

 public:
  channel() noexcept = default;
  explicit channel(owned_handle pipe) : state_(std::make_unique<state>()) {
    state_->pipe = std::move(pipe);
    state_->event = owned_handle(::CreateEventW(nullptr, TRUE, FALSE, nullptr));
    if (!state_->event) throw_last_error("CreateEvent");
    state_->read_ov.hEvent = state_->event.get();
    state_->write_ov.hEvent = state_->event.get();
    state_->read_buffer = std::make_unique<std::byte[]>(buffer_size);
    arm_read();
  }
  channel(channel&&) noexcept = default;
  channel& operator=(channel&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;
  ~channel() { reset(); }

  explicit operator bool() const noexcept { return state_ != nullptr; }

  /// Cancels what is outstanding and waits for the cancellation (the kernel must be done with
  /// the buffers before they go), then closes the pipe.
  void reset() noexcept {
    if (!state_) return;
    state& s = *state_;
    if (s.read_pending || s.write_pending) {
      ::CancelIoEx(s.pipe.get(), nullptr);
      DWORD n = 0;
      if (s.read_pending) ::GetOverlappedResult(s.pipe.get(), &s.read_ov, &n, TRUE);
      if (s.write_pending) ::GetOverlappedResult(s.pipe.get(), &s.write_ov, &n, TRUE);
    }
    state_.reset();
  }

  /// Bytes written (accepted: the copy is being written), 0 while an earlier write is still
  /// outstanding, -1 when the worker is gone.
  std::ptrdiff_t write_some(const void* data, std::size_t size) noexcept {
    state& s = *state_;
    if (s.write_pending) {
      DWORD n = 0;
      if (!::GetOverlappedResult(s.pipe.get(), &s.write_ov, &n, FALSE)) {
        if (::GetLastError() == ERROR_IO_INCOMPLETE) return 0;
        s.write_pending = false;
        return -1;
      }
      s.write_pending = false;
    }
    const std::size_t n = std::min<std::size_t>(size, std::size_t{4} << 20);
    try {
      s.write_buffer.assign(static_cast<const std::byte*>(data),
                            static_cast<const std::byte*>(data) + n);
    } catch (...) {
      return -1;
    }
    s.write_ov.Internal = 0;
    s.write_ov.InternalHigh = 0;
    s.write_ov.Offset = 0;
    s.write_ov.OffsetHigh = 0;
    if (!::WriteFile(s.pipe.get(), s.write_buffer.data(), static_cast<DWORD>(n), nullptr,
                     &s.write_ov) &&
        ::GetLastError() != ERROR_IO_PENDING)
      return -1;
    s.write_pending = true;  // completed or not: write_some or the wait collects it
    return static_cast<std::ptrdiff_t>(n);
  }

  /// Bytes read, 0 at end of stream, -1 on error, -2 when nothing has arrived.
  std::ptrdiff_t read_some(void* data, std::size_t size) noexcept {
    state& s = *state_;
    for (;;) {
      if (s.buffered > s.consumed) {
        const std::size_t n = std::min<std::size_t>(size, s.buffered - s.consumed);
        std::copy_n(s.read_buffer.get() + s.consumed, n, static_cast<std::byte*>(data));
        s.consumed += n;
        if (s.consumed == s.buffered) arm_read();
        return static_cast<std::ptrdiff_t>(n);
      }
      if (s.ended) return 0;
      if (s.failed) return -1;
      if (!s.read_pending) {
        arm_read();
        continue;
      }
      DWORD n = 0;
      if (!::GetOverlappedResult(s.pipe.get(), &s.read_ov, &n, FALSE)) {
        const DWORD err = ::GetLastError();
        if (err == ERROR_IO_INCOMPLETE) return -2;
        s.read_pending = false;
        (err == ERROR_BROKEN_PIPE || err == ERROR_PIPE_NOT_CONNECTED ? s.ended : s.failed) = true;
        continue;
      }
      s.read_pending = false;
      s.buffered = n;
      s.consumed = 0;
      if (n == 0) arm_read();  // a zero-byte message: nothing to hand out
    }
  }

  // For wait_set.
  HANDLE event() const noexcept { return state_->event.get(); }
  bool readable_now() const noexcept {
    const state& s = *state_;
    return s.buffered > s.consumed || s.ended || s.failed ||
           (s.read_pending && HasOverlappedIoCompleted(&s.read_ov));
  }
  bool writable_now() const noexcept {
    const state& s = *state_;
    return !s.write_pending || HasOverlappedIoCompleted(&s.write_ov);
  }

 private:
  struct state {
    owned_handle pipe;
    owned_handle event;
    OVERLAPPED read_ov{};
    OVERLAPPED write_ov{};
    std::unique_ptr<std::byte[]> read_buffer;
    std::vector<std::byte> write_buffer;
    std::size_t buffered = 0;  // bytes of the last completed read
    std::size_t consumed = 0;  // of those, handed out
    bool read_pending = false;
    bool write_pending = false;
    bool ended = false;
    bool failed = false;
  };

  void arm_read() noexcept {
    state& s = *state_;
    s.buffered = 0;
    s.consumed = 0;
    if (s.ended || s.failed) return;
    s.read_ov.Internal = 0;
    s.read_ov.InternalHigh = 0;
    s.read_ov.Offset = 0;
    s.read_ov.OffsetHigh = 0;
    if (::ReadFile(s.pipe.get(), s.read_buffer.get(), buffer_size, nullptr, &s.read_ov) ||
        ::GetLastError() == ERROR_IO_PENDING) {
      s.read_pending = true;
      return;
    }
    const DWORD err = ::GetLastError();
    (err == ERROR_BROKEN_PIPE || err == ERROR_PIPE_NOT_CONNECTED ? s.ended : s.failed) = true;
  }

  std::unique_ptr<state> state_;
};

/// A channel and the worker's end of it (blocking, not inheritable until spawn.hpp makes a copy
/// for the one child that gets it).
struct channel_pair {
  channel mine;
  owned_handle theirs;
};

inline channel_pair make_channel() {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = [] {
    std::random_device random;
    return (std::uint64_t{random()} << 32) ^ random();
  }();
  const std::wstring name = L"\\\\.\\pipe\\parallel-" + std::to_wstring(::GetCurrentProcessId()) +
                            L"-" + std::to_wstring(++counter) + L"-" + std::to_wstring(salt);
  owned_handle server(::CreateNamedPipeW(
      name.c_str(), PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
      PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1, 1 << 16,
      1 << 16, 0, nullptr));
  if (!server) throw_last_error("CreateNamedPipe(worker channel)");
  owned_handle client(::CreateFileW(name.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr,
                                    OPEN_EXISTING, 0, nullptr));
  if (!client) throw_last_error("CreateFile(worker channel)");
  OVERLAPPED connect{};
  owned_handle connected(::CreateEventW(nullptr, TRUE, FALSE, nullptr));
  connect.hEvent = connected.get();
  if (!::ConnectNamedPipe(server.get(), &connect)) {
    const DWORD err = ::GetLastError();
    DWORD n = 0;
    if (err == ERROR_IO_PENDING) {
      if (!::GetOverlappedResult(server.get(), &connect, &n, TRUE))
        throw_last_error("ConnectNamedPipe(worker channel)");
    } else if (err != ERROR_PIPE_CONNECTED) {
      throw_last_error("ConnectNamedPipe(worker channel)", err);
    }
  }
  return {channel(std::move(server)), std::move(client)};
}

/// What the engine watches to see a worker end: its process handle (a copy of its own).
using process_watch_handle = owned_handle;

inline owned_handle watch_process(pid_type pid) noexcept {
  HANDLE process = children::find(pid);
  HANDLE copy = nullptr;
  if (process == nullptr || !::DuplicateHandle(::GetCurrentProcess(), process,
                                               ::GetCurrentProcess(), &copy, SYNCHRONIZE, FALSE, 0))
    return {};
  return owned_handle(copy);
}

/// Sends `signal` (TerminateProcess) to a worker, a child the library has not reaped.
inline void signal_process(const owned_handle&, pid_type pid, int signal) noexcept {
  send_signal(pid, signal);
}

/// True when the watched process ends within `timeout_ms`.
inline bool ended_within(const owned_handle& watch, int timeout_ms) noexcept {
  return ::WaitForSingleObject(watch.get(), static_cast<DWORD>(timeout_ms)) == WAIT_OBJECT_0;
}

/// The engine's wait: channels, process watches and a wake-up, in the order they were added;
/// after wait(), readable(k) / writable(k) / any(k) say what happened to entry k.
class wait_set {
 public:
  void clear() noexcept { entries_.clear(); }
  bool empty() const noexcept { return entries_.empty(); }
  std::size_t size() const noexcept { return entries_.size(); }

  void add_channel(const channel& c, bool want_write) {
    entries_.push_back({&c, nullptr, want_write});
  }
  void add_watch(const owned_handle& watch) { entries_.push_back({nullptr, watch.get(), false}); }
  void add_wakeup(const wakeup& w) { entries_.push_back({nullptr, w.event(), false}); }

  /// Waits until something is ready or `timeout_ms` passes (-1: no limit); the number of
  /// entries that are ready.
  int wait(int timeout_ms) {
    handles_.clear();
    for (const entry& e : entries_) handles_.push_back(e.c != nullptr ? e.c->event() : e.handle);
    const ULONGLONG start = ::GetTickCount64();
    for (;;) {
      // A channel's event also fires for the operation nobody waits for (a write completing
      // while only reads matter): clear it, then look, then sleep. A completion after the clear
      // sets it again, and one before it is seen by the look.
      for (const entry& e : entries_)
        if (e.c != nullptr) ::ResetEvent(e.c->event());
      const int ready = scan();
      if (ready > 0) return ready;
      DWORD left = INFINITE;
      if (timeout_ms >= 0) {
        const ULONGLONG spent = ::GetTickCount64() - start;
        if (spent >= static_cast<ULONGLONG>(timeout_ms)) return 0;
        left = static_cast<DWORD>(static_cast<ULONGLONG>(timeout_ms) - spent);
      }
      // WaitForMultipleObjects takes at most 64 handles: with more, wait in short slices over
      // windows of them.
      if (handles_.size() <= MAXIMUM_WAIT_OBJECTS) {
        if (::WaitForMultipleObjects(static_cast<DWORD>(handles_.size()), handles_.data(), FALSE,
                                     left) == WAIT_FAILED)
          throw_last_error("WaitForMultipleObjects");
      } else {
        for (std::size_t first = 0; first < handles_.size(); first += MAXIMUM_WAIT_OBJECTS) {
          const std::size_t n =
              std::min<std::size_t>(MAXIMUM_WAIT_OBJECTS, handles_.size() - first);
          if (::WaitForMultipleObjects(static_cast<DWORD>(n), handles_.data() + first, FALSE,
                                       std::min<DWORD>(left, 1)) != WAIT_TIMEOUT)
            break;
        }
      }
    }
  }

  bool readable(std::size_t k) const noexcept { return (ready_[k] & 1) != 0; }
  bool writable(std::size_t k) const noexcept { return (ready_[k] & 2) != 0; }
  bool any(std::size_t k) const noexcept { return ready_[k] != 0; }

 private:
  struct entry {
    const channel* c;
    HANDLE handle;
    bool want_write;
  };

  int scan() {
    ready_.assign(entries_.size(), 0);
    int ready = 0;
    for (std::size_t k = 0; k < entries_.size(); ++k) {
      const entry& e = entries_[k];
      if (e.c != nullptr) {
        ready_[k] = static_cast<unsigned char>((e.c->readable_now() ? 1 : 0) |
                                               (e.want_write && e.c->writable_now() ? 2 : 0));
      } else {
        ready_[k] = ::WaitForSingleObject(e.handle, 0) == WAIT_OBJECT_0 ? 1 : 0;
      }
      ready += ready_[k] != 0 ? 1 : 0;
    }
    return ready;
  }

  std::vector<entry> entries_;
  std::vector<HANDLE> handles_;
  std::vector<unsigned char> ready_;
};

}  // namespace parallel::detail::os
