// parallel: Python's multiprocessing.Pool / concurrent.futures / joblib for C++20.
// The umbrella header: everything public, nothing else.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include "codec.hpp"
#include "errors.hpp"
#include "future.hpp"
#include "join.hpp"
#include "map.hpp"
#include "policy.hpp"
#include "process.hpp"
#include "process_pool.hpp"
#include "progress.hpp"
#include "thread_pool.hpp"
#include "version.hpp"
#include "wait.hpp"
#include "worker_state.hpp"
