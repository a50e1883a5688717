// The one place that picks the operating-system layer of the process backends: child processes
// and their status, channels and the wait over them, shared memory, spawning this executable
// again, and which module holds a function: linux/ (its memfd, pidfd, signalfd and eventfd, over
// the portable posix/environment.hpp) or win32/. Logic files (ipc/, algorithms/) include this
// header and call parallel::detail::os, never <unistd.h> or <windows.h> themselves.
#pragma once

#if defined(_WIN32)
#include "win32/channel.hpp"
#include "win32/modules.hpp"
#include "win32/process.hpp"
#include "win32/spawn.hpp"
#elif defined(__linux__)
#include "linux/channel.hpp"
#include "linux/modules.hpp"
#include "linux/process.hpp"
#include "linux/spawn.hpp"
#else
#error \
    "parallel: the process backends need Linux or Windows (memfd, pidfd, signalfd); the thread backends (<parallel/map.hpp>, <parallel/thread_pool.hpp>) work on any POSIX system"
#endif
