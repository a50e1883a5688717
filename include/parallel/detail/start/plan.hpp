// How a pool starts its workers, one specialisation of start_method<Start> per start method this
// platform has: spawn everywhere (spawn.hpp), fork and forkserver on POSIX only (fork.hpp). A start
// method the platform lacks has no specialisation, and policy.hpp refuses to name it with a clear
// message before that could matter.
#pragma once

#include <functional>
#include <string>

#include "../ipc/engine.hpp"
#include "../process_platform.hpp"

namespace parallel::detail {

/// What the pool's engine needs to know about a start method.
struct start_plan {
  ipc::engine::starter start;
  /// Appended to the error when a worker ends before its handshake.
  std::string startup_hint;
  /// Empty: the workers are our children (waitpid / their process handle).
  std::function<ipc::worker_end(os::pid_type)> reaper{};
};

template <class Start>
struct start_method;  // static start_plan plan()

inline constexpr const char* spawn_hint =
    "; a spawned worker runs this executable again: make parallel::spawn_main(argc, argv) the "
    "first statement of main (the twin of Python's `if __name__ == '__main__':` guard)";

}  // namespace parallel::detail
