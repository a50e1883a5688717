// The backends of processes<Start>: a pool of the call's own for start::spawn and
// start::forkserver (pool_verbs.hpp), workers forked at the call for start::fork
// (fork_verbs.hpp), where the system has fork() (PARALLEL_DETAIL_HAS_FORK, from the os layer).
#pragma once

#include "../platform.hpp"
#include "pool_verbs.hpp"
#if PARALLEL_DETAIL_HAS_FORK
#include "fork_verbs.hpp"
#endif
