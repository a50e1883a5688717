// parallel::worker_state<T>(): what a worker keeps from one task to the next (mpire's
// worker_state), on every backend.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

namespace parallel {

/// The calling worker's own T: value-initialised the first time a task on that worker asks for
/// it, the same object for every later task there, destroyed when the worker ends (after a
/// thread_pool's on_exit). A thread pool's worker is a thread; a process pool's worker is a
/// process, which keeps it until it retires (max_tasks_per_child) or the pool ends. Items that
/// run in the calling thread (parallel::sequential, a small map's inline start on
/// parallel::threads) get that thread's own. Set it up in an initializer, use it in tasks:
///
///     parallel::thread_pool pool{{.initializer = [] { parallel::worker_state<Cache>().load(); }}};
///     pool.map([](int x) { return parallel::worker_state<Cache>().lookup(x); }, xs);
template <class T>
T& worker_state() {
  thread_local T state{};
  return state;
}

}  // namespace parallel
