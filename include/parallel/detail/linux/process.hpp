// POSIX side of the process backends: child processes, their exit status, private channels
// (socketpair, memfd), and I/O loops that survive EINTR. Every descriptor made here is
// O_CLOEXEC; nothing is named in the file system.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <typeinfo>
#include <utility>

#include "../../errors.hpp"
#include "../exception_names.hpp"
#include "../posix/environment.hpp"

namespace parallel::detail::os {

using pid_type = ::pid_t;
/// What a worker's loop reads and writes, and what names an arena to a spawned child.
using native_handle = int;

/// Throws for a failed system call. Running out of descriptors or address space happens where
/// a worker is being started (socketpair, memfd, eventfd, dup, fork, posix_spawn, mmap): a
/// spawn_error that names the limit.
[[noreturn]] inline void throw_errno(const std::string& what, int err = errno) {
  if (err == EMFILE || err == ENFILE || err == ENOMEM)
    throw parallel::spawn_error(describe_errno(what, err));
  throw parallel::error(describe_errno(what, err));
}

/// An owned descriptor.
class fd_handle {
 public:
  fd_handle() noexcept = default;
  explicit fd_handle(int fd) noexcept : fd_(fd) {}
  fd_handle(fd_handle&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  fd_handle& operator=(fd_handle&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  fd_handle(const fd_handle&) = delete;
  fd_handle& operator=(const fd_handle&) = delete;
  ~fd_handle() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/// A connected pair of AF_UNIX sockets of `type`, both O_CLOEXEC and numbered 3 or more.
inline std::pair<fd_handle, fd_handle> unix_socket_pair(int type, const char* what) {
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0) throw_errno(what);
  fd_handle first(above_standard_fds(fds[0]));
  const int first_errno = errno;
  fd_handle second(above_standard_fds(fds[1]));
  if (!first || !second)
    throw_errno("fcntl(F_DUPFD_CLOEXEC) of a socket", first ? errno : first_errno);
  return {std::move(first), std::move(second)};
}

/// A connected pair of stream sockets, both O_CLOEXEC.
inline std::pair<fd_handle, fd_handle> socket_pair() {
  return unix_socket_pair(SOCK_STREAM, "socketpair");
}

inline void set_nonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) != 0)
    throw_errno("fcntl(O_NONBLOCK)");
}

/// Anonymous shared memory of `bytes` bytes (memfd on Linux): O_CLOEXEC, never in /dev/shm.
inline fd_handle anonymous_memory(std::size_t bytes) {
  const int made = static_cast<int>(::syscall(SYS_memfd_create, "parallel-arena", 1u /*CLOEXEC*/));
  if (made < 0) throw_errno("memfd_create");
  fd_handle fd(above_standard_fds(made));
  if (!fd) throw_errno("fcntl(F_DUPFD_CLOEXEC) of a memfd");
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) throw_errno("ftruncate(memfd)");
  return fd;
}

/// A MAP_SHARED mapping, unmapped on destruction. Survives fork: parent and child see the same
/// pages.
class shared_mapping {
 public:
  shared_mapping() noexcept = default;
  shared_mapping(int fd, std::size_t bytes) : shared_mapping(fd, bytes, std::nothrow) {
    if (data_ == nullptr) throw_errno("mmap(shared arena)");
  }
  /// Empty (data() == nullptr, errno set) when the mapping cannot be made.
  shared_mapping(int fd, std::size_t bytes, std::nothrow_t) noexcept {
    void* at = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (at == MAP_FAILED) return;
    data_ = static_cast<std::byte*>(at);
    size_ = bytes;
  }
  shared_mapping(shared_mapping&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  shared_mapping& operator=(shared_mapping&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~shared_mapping() { reset(); }
  void reset() noexcept {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A descriptor that becomes readable when the process ends (pidfd), or an empty handle where
/// the kernel has none (then the end is seen as EOF on the worker's channel).
inline fd_handle process_watch(pid_type pid) noexcept {
#if defined(SYS_pidfd_open)
  // CLOEXEC by default. None when out of descriptors: the end is then seen on the channel.
  return fd_handle(above_standard_fds(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))));
#else
  (void)pid;
  return fd_handle();
#endif
}

/// Monotonic nanoseconds, comparable between processes of one machine.
inline std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

inline pid_type current_pid() noexcept { return ::getpid(); }

/// Makes the calling (child) process die with its parent: SIGKILL when the parent ends (Linux),
/// plus a check for the race where the parent ended before the request was made.
inline void die_with_parent(pid_type parent) noexcept {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(128 + SIGKILL);
}

/// What a new worker does first: 0-2 open (open_standard_fds), Ctrl-C and SIGTERM by default
/// where a handler catches them (a forked worker has none left: fork_with_default_handlers;
/// a spawned one may have its program's own, installed before spawn_main ran), while an ignored
/// one stays ignored (a program started with Ctrl-C ignored — nohup, a background job,
/// `trap '' INT` — keeps its workers through a Ctrl-C too), and death with its parent.
inline void become_worker(pid_type parent) noexcept {
  open_standard_fds();
  for (int sig : {SIGINT, SIGTERM}) {
    struct sigaction action {};
    if (::sigaction(sig, nullptr, &action) != 0) continue;
    if ((action.sa_flags & SA_SIGINFO) == 0 && action.sa_handler == SIG_IGN) continue;
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    ::sigaction(sig, &fallback, nullptr);
  }
  die_with_parent(parent);
}

/// Calls once, in this process, the C library functions a forked worker calls first thing and
/// its parent may not (sigaction, prctl, getppid), in forms that change nothing. Where a
/// program binds library calls lazily (the default), the first call of a function in a process
/// resolves it: a symbol lookup through the libraries' tables and a write to the program's,
/// and in a fresh fork each first touch of a page there is a fault (4-5 faults a function,
/// ~0.3 ms a worker on this project's VM). Resolved here, every worker forked later inherits
/// them resolved.
inline void resolve_worker_calls() noexcept {
  static const bool resolved = [] {
    struct sigaction action {};
    (void)::sigaction(SIGTERM, nullptr, &action);
    int death_signal = 0;
    (void)::prctl(PR_GET_PDEATHSIG, &death_signal);
    (void)::getppid();
    return true;
  }();
  (void)resolved;
}

inline bool parent_is(pid_type parent) noexcept { return ::getppid() == parent; }

/// fork() as the system gives it: the child's pid in the parent, 0 in the child, -1 (errno
/// set) when the system refused. For a single-threaded process that answers a refusal itself
/// (the forkserver).
inline pid_type try_fork() noexcept { return ::fork(); }

/// Closes a descriptor this process no longer needs (a copy inherited across fork).
inline void close_descriptor(int fd) noexcept { ::close(fd); }

[[noreturn]] inline void exit_now(int code) noexcept { ::_exit(code); }

/// The ways a process ended, as Python's Process.exitcode says them: the exit code, or minus
/// the signal number.
inline int exit_code_of(int status) noexcept {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

/// True when the process was ended by a signal (killed from outside, or crashed), not by an
/// exit of its own.
inline bool ended_by_signal(int status) noexcept { return WIFSIGNALED(status); }

inline std::string signal_name(int signal) {
  switch (signal) {
    case SIGKILL:
      return "SIGKILL";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGABRT:
      return "SIGABRT";
    case SIGTERM:
      return "SIGTERM";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGINT:
      return "SIGINT";
    case SIGPIPE:
      return "SIGPIPE";
    default:
      return "signal " + std::to_string(signal);
  }
}

/// "was killed by signal 9 (SIGKILL)" / "exited with code 3".
inline std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + signal_name(sig) + ")";
  }
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  return "ended with status " + std::to_string(status);
}

/// Waits for `pid`; returns its status. `block` false: returns -1 when it is still running.
inline int wait_for(pid_type pid, bool block) {
  int status = 0;
  for (;;) {
    const pid_type got = ::waitpid(pid, &status, block ? 0 : WNOHANG);
    if (got == pid) return status;
    if (got == 0) return -1;
    if (errno == EINTR) continue;
    throw_errno("waitpid");
  }
}

/// Sends `signal` to `pid`, a process this library started and has not reaped. A pid <= 0
/// would be a bug in the library, and is never passed on: kill() reads 0 as the caller's process
/// group and -1 as every process the caller may signal (as root, all of them). The program
/// stops loudly instead.
inline void send_signal(pid_type pid, int signal) noexcept {
  if (pid <= 0) {
    std::fprintf(stderr,
                 "parallel: internal error: refusing to send signal %d to pid %ld (not a process "
                 "the library owns); please report this\n",
                 signal, static_cast<long>(pid));
    std::abort();
  }
  ::kill(pid, signal);
}
inline constexpr int kill_signal = SIGKILL;
inline constexpr int terminate_signal = SIGTERM;

/// Writes all of `size` bytes to a blocking descriptor. False when the peer is gone.
inline bool write_all(int fd, const void* data, std::size_t size) noexcept {
  const auto* at = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, at, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    at += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

/// One write to a non-blocking socket: bytes written, 0 when it would block, -1 when the peer is
/// gone.
inline std::ptrdiff_t write_some(int fd, const void* data, std::size_t size) noexcept {
  for (;;) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -1;
  }
}

/// One read: bytes read, 0 at end of stream, -1 on error, -2 when it would block.
inline std::ptrdiff_t read_some(int fd, void* data, std::size_t size, bool nonblocking) noexcept {
  for (;;) {
    const ssize_t n = ::recv(fd, data, size, nonblocking ? MSG_DONTWAIT : 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return -2;
    if (errno == ECONNRESET) return 0;
    return -1;
  }
}

/// Waits at most `timeout` for `pid`; returns its status, or -1 when it is still running then.
/// Sleeps in poll() on a pidfd where the kernel has one; elsewhere naps between waitpid(WNOHANG)
/// calls, 50 us at first and doubling up to 10 ms, so a short wait stays short. A timeout of a
/// century or more is a century (the deadline must not overflow the clock).
inline int wait_at_most(pid_type pid, std::chrono::milliseconds timeout) {
  using namespace std::chrono;
  const auto deadline = steady_clock::now() + std::min<milliseconds>(timeout, hours(24 * 36525));
  int status = wait_for(pid, false);
  if (status != -1) return status;
  const fd_handle watch = process_watch(pid);
  nanoseconds nap = microseconds(50);
  for (;;) {
    const nanoseconds left = deadline - steady_clock::now();
    if (left <= nanoseconds::zero()) return -1;
    if (watch) {
      // Rounded up: 300 us left must not become a poll of 0 ms, which would spin.
      const auto ms = std::min<milliseconds::rep>(ceil<milliseconds>(left).count(), 1 << 30);
      pollfd ready{watch.get(), POLLIN, 0};
      (void)::poll(&ready, 1, static_cast<int>(ms));  // EINTR or not: waitpid below decides
    } else {
      const nanoseconds sleep = std::min(nap, left);
      const timespec ts{static_cast<time_t>(sleep.count() / 1000000000),
                        static_cast<long>(sleep.count() % 1000000000)};
      ::nanosleep(&ts, nullptr);
      nap = std::min<nanoseconds>(nap * 2, milliseconds(10));
    }
    status = wait_for(pid, false);
    if (status != -1) return status;
  }
}

/// fork() for a child that is to run one function. Every signal is blocked across the fork, and
/// in the child the signals the parent catches go back to their default action before the mask
/// is restored, as exec() would do (ignored ones stay ignored). Without this, a terminate() right
/// after the fork runs the parent's SIGTERM handler (a test framework's, a server's graceful
/// shutdown) in the child, which then does not end or deadlocks on a lock held at the fork.
inline pid_type fork_with_default_handlers() {
  resolve_worker_calls();
  sigset_t all;
  sigset_t previous;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  const pid_type pid = ::fork();
  const int fork_errno = errno;
  if (pid == 0) default_caught_signals();
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid < 0) throw_errno("fork", fork_errno);
  return pid;
}

/// The library's own descriptors (worker channels, process watches, arenas), so that a newly
/// forked worker can close the ones that belong to other workers and pools: a worker holding
/// another worker's channel open would hide that worker's death from the caller. Lock-free, so
/// a fork from any thread finds it consistent. Slots hold fd + 1; 0 is free.
class library_fds {
  static constexpr std::size_t capacity = 4096;

 public:
  static void add(int fd) noexcept {
    if (fd < 0) return;
    auto& table = slots();
    for (std::size_t i = 0; i < capacity; ++i) {
      if (table[i].load(std::memory_order_relaxed) != 0) continue;
      // The bound first, then the slot (release): a fork that sees the slot sees the bound.
      std::size_t used = in_use().load(std::memory_order_relaxed);
      while (used <= i && !in_use().compare_exchange_weak(used, i + 1, std::memory_order_relaxed)) {
      }
      int expected = 0;
      if (table[i].compare_exchange_strong(expected, fd + 1, std::memory_order_release)) return;
    }
  }
  static void remove(int fd) noexcept {
    if (fd < 0) return;
    auto& table = slots();
    const std::size_t used = in_use().load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < used; ++i) {
      int expected = fd + 1;
      if (table[i].compare_exchange_strong(expected, 0, std::memory_order_relaxed)) return;
    }
  }
  /// In a new worker: closes every registered descriptor except `keep`. Looks only at the
  /// slots ever used: the rest of the table is pages the child would fault in to read zeros.
  static void close_all_except(std::initializer_list<int> keep) noexcept {
    auto& table = slots();
    const std::size_t used = in_use().load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < used; ++i) {
      auto& slot = table[i];
      const int fd = slot.load(std::memory_order_relaxed) - 1;
      if (fd < 0) continue;
      bool kept = false;
      for (int k : keep) kept = kept || k == fd;
      if (!kept) {
        ::close(fd);
        slot.store(0, std::memory_order_relaxed);
      }
    }
  }

 private:
  static std::array<std::atomic<int>, capacity>& slots() noexcept {
    static std::array<std::atomic<int>, capacity> table{};
    return table;
  }
  /// One past the highest slot ever taken (it only grows).
  static std::atomic<std::size_t>& in_use() noexcept {
    static std::atomic<std::size_t> used{0};
    return used;
  }
};

/// An fd_handle whose descriptor is in library_fds while it is open.
class library_fd {
 public:
  library_fd() noexcept = default;
  explicit library_fd(fd_handle fd) noexcept : fd_(std::move(fd)) { library_fds::add(fd_.get()); }
  library_fd(library_fd&&) noexcept = default;
  library_fd& operator=(library_fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::move(other.fd_);
    }
    return *this;
  }
  ~library_fd() { reset(); }
  void reset() noexcept {
    library_fds::remove(fd_.get());
    fd_.reset();
  }
  int get() const noexcept { return fd_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

 private:
  fd_handle fd_;
};

/// The handle that names an arena's memory (arena.hpp): its memfd, registered.
using memory_handle = library_fd;
inline memory_handle adopt_memory(native_handle fd) noexcept { return library_fd(fd_handle(fd)); }

/// A connected pair of message sockets (message boundaries kept; descriptors can travel).
inline std::pair<fd_handle, fd_handle> message_socket_pair() {
  return unix_socket_pair(SOCK_SEQPACKET, "socketpair(SOCK_SEQPACKET)");
}

/// Sends one message with up to two descriptors attached (SCM_RIGHTS). False when the peer is
/// gone.
inline bool send_message(int socket, const void* data, std::size_t size, const int* fds,
                         std::size_t fd_count) noexcept {
  iovec io{const_cast<void*>(data), size};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  if (fd_count > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(fd_count * sizeof(int));
    cmsghdr* header = CMSG_FIRSTHDR(&msg);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(fd_count * sizeof(int));
    std::memcpy(CMSG_DATA(header), fds, fd_count * sizeof(int));
  }
  for (;;) {
    if (::sendmsg(socket, &msg, MSG_NOSIGNAL) >= 0) return true;
    if (errno != EINTR) return false;
  }
}

/// Receives one message (at most `size` bytes) and up to two descriptors, which arrive
/// O_CLOEXEC. Returns the message length, 0 at end of stream, -1 on error.
inline std::ptrdiff_t receive_message(int socket, void* data, std::size_t size, fd_handle* fds,
                                      std::size_t fd_capacity) noexcept {
  iovec io{data, size};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  std::size_t taken = 0;
  for (cmsghdr* h = CMSG_FIRSTHDR(&msg); h != nullptr; h = CMSG_NXTHDR(&msg, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
      if (taken < fd_capacity)
        fds[taken++] = fd_handle(fd);
      else
        ::close(fd);  // more than expected: never leak
    }
  }
  return n;
}

/// SIGCHLD as a readable descriptor (the calling thread blocks the signal): for a
/// single-threaded server that reaps its children in its poll loop.
inline fd_handle child_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) throw_errno("sigprocmask");
  fd_handle fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) throw_errno("signalfd");
  return fd;
}

inline void drain_child_signals(int fd) noexcept {
  signalfd_siginfo info;
  while (::read(fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
  }
}

/// In a child of that server: SIGCHLD back to normal.
inline void unblock_child_signals() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

/// Reaps any ended child: its pid and status, or pid 0 when none has ended.
inline std::pair<pid_type, int> reap_any() noexcept {
  int status = 0;
  pid_type pid;
  do {
    pid = ::waitpid(-1, &status, WNOHANG);
  } while (pid < 0 && errno == EINTR);
  return {pid > 0 ? pid : 0, status};
}

/// Waits until one of `fds` is ready or `timeout_ms` passes (-1 = no limit).
using poll_entry = ::pollfd;
inline constexpr short poll_in = POLLIN;
inline constexpr short poll_out = POLLOUT;
inline constexpr short poll_hangup = POLLHUP | POLLERR | POLLNVAL;
/// A signal ends the wait early (returns 0): the caller re-checks its deadlines, so signals
/// arriving faster than a timeout cannot postpone it forever.
inline int poll_fds(poll_entry* fds, std::size_t count, int timeout_ms) {
  const int n = ::poll(fds, static_cast<nfds_t>(count), timeout_ms);
  if (n >= 0) return n;
  if (errno == EINTR) return 0;
  throw_errno("poll");
}

/// True when `address` lies in a page mapped into this process (code, data, heap, stacks).
inline bool is_mapped_address(std::uintptr_t address) noexcept {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  if (address < page) return false;
  unsigned char resident = 0;
  return ::mincore(reinterpret_cast<void*>(address / page * page), 1, &resident) == 0;
}

/// True when `fd` becomes readable within `timeout_ms` (a pidfd: the process has ended).
inline bool readable_within(int fd, int timeout_ms) noexcept {
  ::pollfd entry{fd, POLLIN, 0};
  int n;
  do {
    n = ::poll(&entry, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  return n > 0 && (entry.revents & POLLIN) != 0;
}

/// A wake-up descriptor another thread can signal (eventfd): readable once signalled.
class wakeup {
 public:
  wakeup() : fd_(fd_handle(make())) {}
  int fd() const noexcept { return fd_.get(); }
  void signal() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(fd_.get(), &one, sizeof one);
  }
  void drain() noexcept {
    std::uint64_t value = 0;
    [[maybe_unused]] const auto n = ::read(fd_.get(), &value, sizeof value);
  }

 private:
  static int make() {
    const int fd = above_standard_fds(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (fd < 0) throw_errno("eventfd");
    return fd;
  }
  library_fd fd_;
};

}  // namespace parallel::detail::os
