// The one place that picks how parallel::process starts its child: fork() on Linux
// (linux_process.hpp), this executable run again on Windows (windows_process.hpp). Either
// defines detail::start_process(f, args...), which returns the child's pid.
#pragma once

#if defined(_WIN32)
#include "windows_process.hpp"
#else
#include "linux_process.hpp"
#endif
