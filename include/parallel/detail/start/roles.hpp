// The one place that picks the start methods of this platform besides spawn (spawn.hpp), and
// the roles other than a pool's worker that a spawned process can have (run_platform_role):
// fork and forkserver, and the forkserver's own role, on POSIX (fork.hpp); a parallel::process
// child on Windows (windows_roles.hpp).
#pragma once

#if defined(_WIN32)
#include "windows_roles.hpp"
#else
#include "fork.hpp"
#endif
