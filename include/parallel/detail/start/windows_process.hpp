// How parallel::process starts its child on Windows: this executable again, with f and its
// arguments shipped through the codec (windows_process_child.hpp); the child runs them from
// parallel::spawn_main.
#pragma once

#include <cstdio>
#include <iostream>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../win32/process.hpp"
#include "windows_process_child.hpp"

namespace parallel::detail {

/// Flushes the caller's output (the child shares the standard handles) and starts the child
/// that runs f(args...); the child's pid.
template <class F, class... Args>
os::pid_type start_process(F&& f, Args&&... args) {
  std::tuple<std::decay_t<Args>...> arguments{std::forward<Args>(args)...};
  const std::decay_t<F> fn(std::forward<F>(f));
  std::cout.flush();
  std::clog.flush();
  std::cerr.flush();
  (void)std::fflush(nullptr);
  return start_process_child(fn, arguments);
}

}  // namespace parallel::detail
