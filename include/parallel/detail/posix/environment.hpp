// What a process may have been given by whoever started it, and what the library does about it
// when it starts workers: resource limits (RLIMIT_NOFILE, RLIMIT_AS), which a failed start names
// with what to do; descriptors 0-2 closed (a daemon), which must never become the library's
// channels; and signal dispositions, which workers inherit as exec() would hand them on
// (ignored ones stay ignored, caught ones go back to their default action).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace parallel::detail::os {

/// The limit on this process's address space (RLIMIT_AS, `ulimit -v`) in bytes; 0 when none.
inline std::size_t address_space_limit() noexcept {
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 0;
  return static_cast<std::size_t>(limit.rlim_cur);
}

/// The current limit on this process's open descriptors (RLIMIT_NOFILE), as text.
inline std::string descriptor_limit_text() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return "?";
  return std::to_string(limit.rlim_cur);
}

/// What a failed system call while starting a worker says. Out of descriptors (EMFILE, ENFILE)
/// or of address space (ENOMEM under RLIMIT_AS) is a limit the user can change, so it says which
/// and how: a pool keeps about two descriptors per worker in the caller (its channel and a
/// process watch), and a start needs three more for a moment.
inline std::string describe_errno(const std::string& what, int err) {
  std::string text = "parallel: " + what + " failed: " + std::strerror(err);
  if (err == EMFILE)
    text += " (EMFILE): this process has reached its limit of open descriptors (RLIMIT_NOFILE = " +
            descriptor_limit_text() +
            "; a process pool keeps about 2 per worker and needs 3 more to start one); raise the "
            "limit (ulimit -n, setrlimit) or start fewer workers";
  else if (err == ENOMEM && address_space_limit() != 0)
    text += ": this process has reached its address-space limit (RLIMIT_AS = " +
            std::to_string(address_space_limit() / 1024) +
            " KiB); raise it (ulimit -v, setrlimit) or start fewer workers";
  else if (err == ENFILE)
    text +=
        " (ENFILE): the system's table of open files is full; close descriptors or raise "
        "fs.file-max";
  return text;
}

/// `fd`, or a duplicate of it numbered 3 or more when it is 0, 1 or 2 (the original is closed):
/// in a caller whose standard descriptors are closed, a new socket takes number 1, and a forked
/// worker's printf would then write into the library's channel. -1 (errno set) when `fd` was
/// -1 or the duplicate could not be made.
inline int above_standard_fds(int fd) noexcept {
  if (fd < 0 || fd > 2) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int err = errno;
  ::close(fd);
  errno = err;
  return moved;
}

/// In a process the library starts, before anything else takes a descriptor: 0, 1 and 2 are
/// open, to /dev/null where the caller had them closed. Output then goes where it would have
/// gone (nowhere), and no descriptor of the library can take one of those numbers.
inline void open_standard_fds() noexcept {
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    const int null = ::open("/dev/null", O_RDWR);  // the lowest free number: `fd` itself
    if (null >= 0 && null != fd) {
      ::dup2(null, fd);
      ::close(null);
    }
  }
}

/// Why a worker's shared memory could not be mapped at all, and what to do.
inline std::string address_space_advice() {
  const std::size_t limit = address_space_limit();
  return std::string("parallel: cannot map a worker's shared arena, not even its control page (") +
         std::strerror(ENOMEM) + "): this process has reached its address-space limit" +
         (limit != 0 ? " (RLIMIT_AS = " + std::to_string(limit / 1024) + " KiB)" : std::string()) +
         "; raise it (ulimit -v, setrlimit(RLIMIT_AS)) or start fewer workers";
}

/// Every signal this process catches goes back to its default action, as exec() does; ignored
/// ones stay ignored. (A handler of the caller run in a worker — a test framework's, a server's
/// graceful shutdown — would not end the worker, or would deadlock on a lock held at the fork.)
inline void default_caught_signals() noexcept {
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction action {};
    if (::sigaction(sig, nullptr, &action) != 0) continue;  // numbers the C library reserves
    const bool caught = (action.sa_flags & SA_SIGINFO) != 0 ||
                        (action.sa_handler != SIG_DFL && action.sa_handler != SIG_IGN);
    if (!caught) continue;
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    ::sigaction(sig, &fallback, nullptr);
  }
}

/// The signals this process ignores, one bit each (bit n - 1 for signal n): what a forkserver is
/// told with each request, so that its workers ignore what the caller ignores now, not what it
/// ignored when the server started.
inline std::uint64_t ignored_signals() noexcept {
  std::uint64_t mask = 0;
  for (int sig = 1; sig < NSIG && sig <= 64; ++sig) {
    struct sigaction action {};
    if (::sigaction(sig, nullptr, &action) != 0) continue;
    if ((action.sa_flags & SA_SIGINFO) == 0 && action.sa_handler == SIG_IGN)
      mask |= std::uint64_t{1} << (sig - 1);
  }
  return mask;
}

/// In a worker forked by the forkserver: the caller's ignored signals (ignored_signals()) are
/// ignored, and those the server ignores and the caller does not have their default action.
/// Handlers are left as they are: the server's are its program's own (exec dropped the
/// caller's), as a spawned worker's are.
inline void adopt_ignored_signals(std::uint64_t mask) noexcept {
  for (int sig = 1; sig < NSIG && sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction action {};
    if (::sigaction(sig, nullptr, &action) != 0) continue;
    const bool ignore = (mask & (std::uint64_t{1} << (sig - 1))) != 0;
    const bool ignored = (action.sa_flags & SA_SIGINFO) == 0 && action.sa_handler == SIG_IGN;
    if (ignore == ignored) continue;
    struct sigaction wanted {};
    wanted.sa_handler = ignore ? SIG_IGN : SIG_DFL;
    ::sigaction(sig, &wanted, nullptr);
  }
}

/// Ctrl-C (SIGINT) ignored from now on: for the forkserver, as Python's does.
inline void ignore_interrupts() noexcept { ::signal(SIGINT, SIG_IGN); }

}  // namespace parallel::detail::os
