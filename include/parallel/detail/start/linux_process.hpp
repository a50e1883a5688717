// How parallel::process starts its child on Linux: fork(), and in the child f(args...) on the
// decay-copies made before the fork, then _exit() (process.hpp's design note says why).
#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../linux/process.hpp"

namespace parallel::detail {

inline void flush_process_output() noexcept {
  std::cout.flush();
  std::clog.flush();
  std::cerr.flush();
  (void)std::fflush(nullptr);
}

/// The child's whole life: f, then _exit(). Never returns into the caller's code.
template <class Task>
[[noreturn]] void run_forked_child(Task& task, os::pid_type parent) noexcept {
  os::die_with_parent(parent);
  int code = 0;
  try {
    std::apply([](auto& fn, auto&... args) { std::invoke(std::move(fn), std::move(args)...); },
               task);
  } catch (...) {
    os::report_process_exception();
    code = 1;
  }
  flush_process_output();
  os::exit_now(code);
}

/// Flushes the caller's output, forks, and runs f(args...) in the child; the child's pid.
template <class F, class... Args>
os::pid_type start_process(F&& f, Args&&... args) {
  std::tuple<std::decay_t<F>, std::decay_t<Args>...> task{std::forward<F>(f),
                                                          std::forward<Args>(args)...};
  const os::pid_type parent = os::current_pid();
  flush_process_output();
  const os::pid_type pid = os::fork_with_default_handlers();
  if (pid == 0) run_forked_child(task, parent);
  return pid;
}

}  // namespace parallel::detail
