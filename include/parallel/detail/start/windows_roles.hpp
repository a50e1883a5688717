// Windows has one start method, spawn (spawn.hpp): nothing here for the pool. The other role a
// spawned process can have is a parallel::process child ("p:1:<parent pid>"), which
// windows_process_child.hpp runs.
#pragma once

#include <string>
#include <vector>

#include "windows_process_child.hpp"

namespace parallel::detail {

/// The roles other than a pool's worker that a spawned process can have here. Returns false
/// for a marker that is not one of them.
inline bool run_platform_role(const std::vector<std::string>& fields, os::native_handle channel) {
  if (fields.size() < 3 || fields[0] != "p") return false;
  run_process_child(channel);
}

}  // namespace parallel::detail
