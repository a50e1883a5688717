// The POSIX-only start methods of a pool: fork (the pool's I/O thread forks each worker, which
// runs the pool's initializer, then tasks until its channel closes, then its on_exit) and
// forkserver (a single-threaded server, itself spawned, forks them: forkserver.hpp). Also the
// server's own role, which parallel::spawn_main enters when the marker says "fs".
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "../../policy.hpp"
#include "../ipc/arena.hpp"
#include "../ipc/worker.hpp"
#include "../linux/process.hpp"
#include "forkserver.hpp"
#include "plan.hpp"

namespace parallel::detail {

/// Starts workers with fork(): the child closes the library's other descriptors, dies with its
/// caller, and runs `handle` for every task until its channel closes (a pool's workers: the
/// shipped task; processes<start::fork>: the call's own function, read in place).
template <class Handle>
ipc::engine::starter fork_starter(Handle& handle) {
  return [&handle](int channel, ipc::arena& shared) -> os::pid_type {
    const os::pid_type parent = os::current_pid();
    std::fflush(nullptr);  // or the child would write the caller's buffered output again
    const os::pid_type pid = os::fork_with_default_handlers();
    if (pid != 0) {
      shared.close_fd();  // the worker has the mapping: one descriptor less here
      return pid;
    }
    os::library_fds::close_all_except({channel});
    os::become_worker(parent);
    ipc::worker_main(channel, shared, handle);
  };
}

template <>
struct start_method<start::fork> {
  static start_plan plan() {
    static constexpr auto shipped = &ipc::run_shipped;
    return {fork_starter(shipped), {}, {}};
  }
};

template <>
struct start_method<start::forkserver> {
  static start_plan plan() {
    return {[](int channel, ipc::arena& shared) {
              const os::pid_type pid = forkserver_client::instance().start_worker(channel, shared);
              shared.close_fd();  // the worker has its own descriptor: one less here
              return pid;
            },
            spawn_hint,  // the server is a spawned process too
            [](os::pid_type pid) { return forkserver_client::instance().wait_status(pid); }};
  }
};

/// The roles other than a pool's worker that a spawned process can have here: the forkserver
/// ("fs:1:<parent pid>"). Returns false for a marker that is not one of them.
inline bool run_platform_role(const std::vector<std::string>& fields, int /*channel*/) {
  if (fields.size() < 3 || fields[0] != "fs") return false;
  run_forkserver(static_cast<os::pid_type>(std::stol(fields[2])));
}

}  // namespace parallel::detail
