// Starting a worker by running this executable again (start::spawn): posix_spawn of
// /proc/self/exe with the caller's command line, the worker's channel as descriptor 3, its
// arena as descriptor 4, and a marker in the environment that parallel::spawn_main reads.
// No shell is involved, and no other descriptor reaches the child.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "process.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace parallel::detail::os {

inline constexpr int spawned_channel_fd = 3;
inline constexpr int spawned_arena_fd = 4;
inline constexpr const char* worker_marker = "PARALLEL_WORKER";

/// The arguments this process was started with (Linux: /proc/self/cmdline). Out of descriptors,
/// a spawn_error naming the limit: a worker started without its arguments would not be the same
/// program.
inline std::vector<std::string> own_command_line() {
  const fd_handle in(::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC));
  if (!in) throw_errno("open(/proc/self/cmdline)");
  std::string all;
  char buffer[4096];
  for (;;) {
    const ::ssize_t got = ::read(in.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw_errno("read(/proc/self/cmdline)");
    if (got == 0) break;
    all.append(buffer, static_cast<std::size_t>(got));
  }
  std::vector<std::string> args;
  std::string current;
  for (char c : all) {
    if (c == '\0') {
      args.push_back(current);
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) args.push_back(current);
  if (args.empty()) args.emplace_back("parallel-worker");
  return args;
}

/// Runs this executable again with `fds` as descriptors 3, 4, ... and `marker` as the value of
/// PARALLEL_WORKER in its environment; returns its pid.
inline pid_type spawn_self(std::initializer_list<int> fds, const std::string& marker) {
  // Move the sources above the target numbers first: a source may itself be 3 or 4. Just
  // above them, not at some high number: that number may be beyond the descriptor limit.
  const int above_targets = spawned_channel_fd + static_cast<int>(fds.size());
  std::vector<fd_handle> moved;
  for (int fd : fds) {
    moved.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, above_targets));
    if (!moved.back()) throw_errno("fcntl(F_DUPFD_CLOEXEC)");
  }

  posix_spawn_file_actions_t actions;
  if (::posix_spawn_file_actions_init(&actions) != 0) throw_errno("posix_spawn_file_actions_init");
  struct cleanup {
    posix_spawn_file_actions_t* a;
    ~cleanup() { ::posix_spawn_file_actions_destroy(a); }
  } destroy_actions{&actions};
  // 0-2 closed here are /dev/null in the child: its output goes nowhere, as it would have, and
  // nothing it opens takes those numbers (a task's printf must not write into a channel).
  for (int standard = 0; standard < spawned_channel_fd; ++standard)
    if (::fcntl(standard, F_GETFD) < 0 && errno == EBADF)
      ::posix_spawn_file_actions_addopen(&actions, standard, "/dev/null", O_RDWR, 0);
  int target = spawned_channel_fd;
  for (const auto& fd : moved) ::posix_spawn_file_actions_adddup2(&actions, fd.get(), target++);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  // Nothing but 0-2 and the descriptors given reaches the child, CLOEXEC or not.
  ::posix_spawn_file_actions_addclosefrom_np(&actions, target);
#endif

  const std::vector<std::string> args = own_command_line();
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  const std::string marker_entry = std::string(worker_marker) + "=" + marker;
  std::vector<char*> envp;
  const std::size_t marker_length = std::strlen(worker_marker);
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, worker_marker, marker_length) == 0 && (*e)[marker_length] == '=') continue;
    envp.push_back(*e);
  }
  envp.push_back(const_cast<char*>(marker_entry.c_str()));
  envp.push_back(nullptr);

  std::fflush(nullptr);
  pid_type pid = -1;
  const int err =
      ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data());
  if (err != 0) throw_errno("posix_spawn of this executable", err);
  return pid;
}

/// The marker of a spawned worker, or nullptr in a normal run.
inline const char* worker_marker_value() noexcept { return std::getenv(worker_marker); }

/// The descriptor a spawned worker inherited as the `index`th of spawn_self's list (0: its
/// channel, 1: its arena).
inline int spawned_handle(int index) noexcept { return spawned_channel_fd + index; }

/// A spawned worker forgets its marker (programs it starts are not workers), and the
/// descriptors spawn_self handed it become O_CLOEXEC again (dup2 cleared the flag so they
/// would cross the exec): a program a task starts must not inherit the worker's channel or arena.
inline void clear_worker_marker() noexcept {
  ::unsetenv(worker_marker);
  for (int fd = spawned_channel_fd; fd <= spawned_arena_fd; ++fd) {
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

}  // namespace parallel::detail::os
