// What a future's cancel() did to its task, as the task's owner (a thread pool's queue, a process
// pool's job core, an MPI cluster) answers it.
#pragma once

#include <cstdint>

namespace parallel::detail {

enum class cancel_outcome : std::uint8_t {
  refused,       // it started (and was left running) or is done: the result stands
  before_start,  // taken back before it started: it never runs
  killed,        // it was running, and its worker process was killed (if_running::kill)
};

}  // namespace parallel::detail
