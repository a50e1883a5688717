// This test program, run again as a helper: a check that needs a caller of its own (one to be
// killed with its process group, one whose standard output is a file, one in a mount namespace
// of its own) starts this executable with a hidden test case selected by its tag and a request
// in the environment variable PARALLEL_FAULT_HELPER. A fresh process, not a fork: it may start
// threads under ThreadSanitizer, and a forkserver it starts is its own, with its output.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "../catch.hpp"
#include "fault_support.hpp"

namespace fault_support {

/// What to start.
struct helper {
  const char* tag;      // "[fault_caller]" selects the test case tagged "[.fault_caller]"
  std::string request;  // PARALLEL_FAULT_HELPER's value
  int stdin_fd = -1;    // the helper's descriptors 0, 1 and 2 (-1: this process's)
  int stdout_fd = -1;
  int stderr_fd = -1;
  bool own_process_group = false;
};

/// Starts the helper; returns its pid. Nothing but descriptors 0-2 reaches it, its signals have
/// their default actions and none is blocked, as in a program started from a shell.
inline pid_t start_helper(const helper& h) {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string argv0;
  std::getline(in, argv0, '\0');
  std::string tag = h.tag;
  // Catch's own report ("Filters: ...") would mix with what the helper's workers write.
  std::string out_option = "--out";
  std::string nowhere = "/dev/null";
  char* argv[] = {argv0.data(), tag.data(), out_option.data(), nowhere.data(), nullptr};

  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "PARALLEL_FAULT_HELPER=", 22) != 0) envp.push_back(*e);
  std::string request = "PARALLEL_FAULT_HELPER=" + h.request;
  envp.push_back(request.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  const int fds[3] = {h.stdin_fd, h.stdout_fd, h.stderr_fd};
  for (int target = 0; target < 3; ++target)
    if (fds[target] >= 0) ::posix_spawn_file_actions_adddup2(&actions, fds[target], target);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
  posix_spawnattr_t attributes;
  ::posix_spawnattr_init(&attributes);
  sigset_t none;
  sigset_t defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGQUIT, SIGPIPE, SIGHUP}) sigaddset(&defaults, sig);
  ::posix_spawnattr_setsigmask(&attributes, &none);
  ::posix_spawnattr_setsigdefault(&attributes, &defaults);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (h.own_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    ::posix_spawnattr_setpgroup(&attributes, 0);
  }
  ::posix_spawnattr_setflags(&attributes, flags);
  std::fflush(nullptr);
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv, envp.data());
  ::posix_spawnattr_destroy(&attributes);
  ::posix_spawn_file_actions_destroy(&actions);
  REQUIRE(err == 0);
  return pid;
}

/// In a helper's test case: its request, or nullptr when the test case was run by hand. The
/// signals Catch handles get their default actions back, as in a program of its own.
inline const char* helper_request() {
  const char* request = std::getenv("PARALLEL_FAULT_HELPER");
  if (request != nullptr)
    for (int sig : {SIGINT, SIGTERM, SIGSEGV, SIGABRT, SIGILL, SIGFPE, SIGBUS})
      ::signal(sig, SIG_DFL);
  return request;
}

/// Waits at most `limit_ms` for the helper to end; returns its status, or -1 (it was then
/// killed and reaped).
inline int wait_helper(pid_t pid, double limit_ms) {
  const std::uint64_t start = now_ns();
  int status = 0;
  for (;;) {
    const pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid) return status;
    if (got < 0 && errno != EINTR) return -1;
    if (ms_since(start) > limit_ms) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    sleep_ms(2);
  }
}

}  // namespace fault_support
