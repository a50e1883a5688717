// The one place that picks the operating-system layer of the process backends: child processes
// and their status, channels and the wait over them, shared memory, spawning this executable
// again, and which module holds a function. Logic files (ipc/, process_pool.hpp) include this
// header and call parallel::detail::os, never <unistd.h> or <windows.h> themselves.
#pragma once

#if defined(_WIN32)
#include "win32/channel.hpp"
#include "win32/modules.hpp"
#include "win32/process.hpp"
#include "win32/spawn.hpp"
#else
#include "posix/channel.hpp"
#include "posix/modules.hpp"
#include "posix/process.hpp"
#include "posix/spawn.hpp"
#endif
