// start::spawn, the start method every platform has: a worker is this executable run again
// (posix_spawn of /proc/self/exe, or CreateProcessW of the module's own path), told by a marker
// in its environment that it is a worker; parallel::spawn_main, the first statement of its main,
// reads the marker and never returns. The marker:
//
//   "1:<parent pid>:<ring bytes>:<hooks bytes>"
//
// (the pool's hooks, its initializer and on_exit, are in the memory it shares with its caller,
// ahead of the rings: arena.hpp). Other roles a spawned process may have
// (the forkserver on POSIX, a parallel::process child on Windows) have markers of their own,
// which the platform's roles know (roles.hpp).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "../../policy.hpp"
#include "../ipc/arena.hpp"
#include "../ipc/identity.hpp"
#include "../ipc/worker.hpp"
#include "../process_platform.hpp"
#include "plan.hpp"
#include "roles.hpp"

namespace parallel::detail {

template <>
struct start_method<start::spawn> {
  static start_plan plan() {
    return {[](os::native_handle channel, ipc::arena& shared) {
              const std::string marker = "1:" + std::to_string(os::current_pid()) + ":" +
                                         std::to_string(shared.ring_size()) + ":" +
                                         std::to_string(shared.hooks_area());
              const os::pid_type pid = os::spawn_self({channel, shared.handle()}, marker);
              shared.close_fd();  // the worker has its own copy: one descriptor less here
              return pid;
            },
            spawn_hint,
            {}};
  }
};

/// A spawned process's life, from spawn_main: parse the marker, then either take the platform's
/// other role or be a pool's worker (join the caller's arena; run the pool's initializer, serve
/// tasks, run its on_exit). Never returns.
[[noreturn]] inline void run_spawned_worker(const std::string& marker) {
  // Read before the marker goes: the handles are named next to it.
  const os::native_handle channel = os::spawned_handle(0);
  const os::native_handle memory = os::spawned_handle(1);
  os::clear_worker_marker();
  const auto fail = [](const std::string& why) {
    std::fprintf(stderr, "parallel: spawned worker cannot start: %s\n", why.c_str());
    std::fflush(nullptr);
    os::exit_now(70);
  };
  std::vector<std::string> fields;
  for (std::size_t from = 0;;) {
    const std::size_t colon = marker.find(':', from);
    fields.push_back(marker.substr(from, colon == std::string::npos ? colon : colon - from));
    if (colon == std::string::npos) break;
    from = colon + 1;
  }
  if (fields.size() < 3) fail("malformed marker '" + marker + "'");
  try {
    if (run_platform_role(fields, channel)) os::exit_now(0);
  } catch (const std::exception& e) {
    fail(e.what());
  }
  if (fields[0] != "1" || fields.size() != 4) fail("marker of another version: '" + marker + "'");
  try {
    const auto parent = static_cast<os::pid_type>(std::stol(fields[1]));
    const auto ring = static_cast<std::size_t>(std::stoull(fields[2]));
    const auto hooks = static_cast<std::size_t>(std::stoull(fields[3]));
    os::become_worker(parent);
    ipc::arena shared(ipc::arena::adopt_t{}, memory, ring, hooks);
    ipc::worker_main(channel, shared, &ipc::run_shipped);
  } catch (const std::exception& e) {
    fail(e.what());
  }
  os::exit_now(70);
}

}  // namespace parallel::detail
