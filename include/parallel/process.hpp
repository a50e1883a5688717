// parallel::process: one child process running one function, as Python's
// multiprocessing.Process(target=f, args=(...)) with start() folded into the constructor.
//
// Design note. On POSIX the child is made with fork(): it starts with a copy of the caller's
// memory, so f and its arguments need no codec: they are decay-copied in the parent before the
// fork (as std::thread copies them), which makes a failing copy throw in the caller, and the
// child only invokes its copy. The child then leaves with _exit(), never by returning: the code
// after the constructor, atexit handlers and static destructors belong to the parent and must not
// run twice. Buffered output is flushed in the parent before the fork (or the child would write
// it a second time) and in the child before _exit() (or what f printed would be lost), as Python
// does. The parent's signal handlers belong to the parent's code as well: the child starts with
// the caught signals back at their default action, as after exec() (so terminate() ends it even
// when the parent handles SIGTERM), and the fork runs with every signal blocked, so a signal sent
// right after it meets the child only once that is done. In a multi-threaded parent the child has
// one thread and whatever locks other threads held at the fork stay held in it: the library does
// nothing in the child but run f, so only f can meet them.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <chrono>
#include <concepts>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "detail/process_platform.hpp"
#include "detail/start/process.hpp"
#include "errors.hpp"

namespace parallel {

/// A child process that runs f(args...), Python's multiprocessing.Process. It starts when it is
/// constructed and ends when f returns (exit code 0) or throws (exit code 1, after the child
/// prints "parallel::process: task raised <type>: <what>" on stderr); the destructor joins.
///
///     parallel::process p{work, 42};   // Process(target=work, args=(42,)).start()
///     p.join();                        // p.join()
///     int code = p.exit_code();        // p.exitcode: 0, 1, an exit(n) code, or -SIGKILL ...
///
/// f and args are copied (or moved) into the child, as std::thread does; results come back
/// through whatever f writes (a pipe, a file, shared memory). Signals the parent catches have
/// their default action in the child; ignored ones stay ignored. The child is killed when its
/// parent dies (on Linux: when the thread that constructed it ends, so construct long-lived
/// processes from a thread that outlives them). A process object is used by one thread at a
/// time; a moved-from one holds no process.
class process {
 public:
  /// Flushes the caller's output, forks, and runs f(args...) in the child. Throws
  /// parallel::error when the child cannot be made, and whatever copying f or args throws.
  template <class F, class... Args>
  explicit process(F&& f, Args&&... args) requires(
      !std::same_as<std::remove_cvref_t<F>, process> &&
      std::invocable<std::decay_t<F>, std::decay_t<Args>...>) {
    pid_ = detail::start_process(std::forward<F>(f), std::forward<Args>(args)...);
  }

  process(const process&) = delete;
  process& operator=(const process&) = delete;

  process(process&& other) noexcept
      : pid_(std::exchange(other.pid_, 0)), exit_code_(std::exchange(other.exit_code_, {})) {}

  /// Waits for the process held so far (as the destructor does), then takes other's.
  process& operator=(process&& other) noexcept {
    if (this != &other) {
      wait_quietly();
      pid_ = std::exchange(other.pid_, 0);
      exit_code_ = std::exchange(other.exit_code_, {});
    }
    return *this;
  }

  /// Joins: waits for the child to end. Use terminate() or kill() first not to wait.
  ~process() { wait_quietly(); }

  /// Waits until the child has ended. Returns at once when it has already been joined.
  void join() {
    if (pid_ != 0 && !exit_code_) record(status(true));
  }

  /// Waits at most `timeout` for the child to end (Python's join(timeout)); true when it has.
  bool join_for(std::chrono::milliseconds timeout) {
    if (pid_ == 0 || exit_code_) return true;
    return record(wait_at_most(timeout));
  }

  /// True while the child runs (Python's is_alive()). Notices the end without blocking.
  bool is_alive() {
    if (pid_ == 0 || exit_code_) return false;
    return !record(status(false));
  }

  /// How the child ended (Python's exitcode): the code it exited with (0 when f returned, 1
  /// when f threw), or minus the signal that killed it (-9 for SIGKILL, -15 for SIGTERM, -6
  /// for abort()). Throws parallel::error while the child still runs: join() first.
  int exit_code() {
    if (pid_ == 0) throw error("parallel::process: exit_code() of a moved-from process");
    if (!exit_code_ && !record(status(false)))
      throw error("parallel::process: exit_code() of pid " + std::to_string(pid_) +
                  ", which is still running; call join() (or join_for()) first, or check "
                  "is_alive()");
    return *exit_code_;
  }

  /// The child's process id (Python's pid); it stays valid after the end. 0 when moved from.
  int pid() const noexcept { return static_cast<int>(pid_); }

  /// Asks the child to stop with SIGTERM (Python's terminate()); join() to wait for it. Does
  /// nothing once the child has been joined (its pid may belong to another process by then).
  void terminate() noexcept { send(detail::os::terminate_signal); }

  /// Stops the child with SIGKILL (Python's kill()); join() to wait for it. Does nothing once
  /// the child has been joined.
  void kill() noexcept { send(detail::os::kill_signal); }

 private:
  /// The status of the child, or -1 while it runs (block false).
  int status(bool block) const {
    try {
      return detail::os::wait_for(pid_, block);
    } catch (const error& e) {
      throw waiting_failed(e);
    }
  }

  int wait_at_most(std::chrono::milliseconds timeout) const {
    try {
      return detail::os::wait_at_most(pid_, timeout);
    } catch (const error& e) {
      throw waiting_failed(e);
    }
  }

  error waiting_failed(const error& e) const {
    return error("parallel::process: cannot wait for pid " + std::to_string(pid_) + " (" +
                 e.what() +
                 "); its exit status is lost when SIGCHLD is ignored or other code reaps it "
                 "with waitpid(-1)");
  }

  /// Keeps the exit code of a status; false for -1 (still running).
  bool record(int wait_status) {
    if (wait_status == -1) return false;
    exit_code_ = detail::os::exit_code_of(wait_status);
    return true;
  }

  /// Joins without throwing, for the destructor and move assignment: a status that cannot be
  /// had (see waiting_failed) leaves nothing to wait for.
  void wait_quietly() noexcept {
    try {
      join();
    } catch (...) {
      exit_code_ = -1;  // the status is lost for good; do not try again
    }
  }

  void send(int sig) noexcept {
    // Until it is reaped, the child's pid cannot be reused, so the signal reaches the child.
    if (pid_ != 0 && !exit_code_) detail::os::send_signal(pid_, sig);
  }

  detail::os::pid_type pid_ = 0;  // 0: no process (moved from)
  std::optional<int> exit_code_;  // set once the child has been reaped
};

}  // namespace parallel
