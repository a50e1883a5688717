// Execution policies (which backend runs a verb) and the options every verb takes.
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <chrono>
#include <cstddef>
#include <type_traits>

#include "detail/platform.hpp"
#include "progress.hpp"

namespace parallel {

/// Runs the verb as a plain loop in the calling thread: the baseline and the debugging aid.
///
///     auto squares = parallel::map(parallel::sequential{}, square, xs);
struct sequential {};

/// Runs the verb on a shared work-stealing thread pool with `workers` threads:
/// 0 = all cores, n > 0 = n, n < 0 = all cores but |n| (at least 1). A map runs its items on
/// at most that many threads at a time, and the calling thread is often one of them: it runs a
/// short call itself, and a share of a longer one beside the pool's threads.
///
///     auto squares = parallel::map(parallel::threads{.workers = -1}, square, xs);
struct threads {
  int workers = 0;
};

/// How a process backend starts its workers (Python's start methods).
namespace start {
/// fork(): the child is a copy of the caller, reading the caller's memory copy-on-write. POSIX.
struct fork {};
/// Runs the same executable again; main must begin with parallel::spawn_main(argc, argv).
struct spawn {};
/// A single-threaded server process, spawned once, forks the workers on request.
struct forkserver {};
/// fork on POSIX, spawn on Windows.
using platform_default = std::conditional_t<detail::os::has_fork, fork, spawn>;
}  // namespace start

namespace detail {
/// Whether this platform has the start method: Windows has no fork(), so spawn alone.
template <class Start>
inline constexpr bool start_available = os::has_fork || std::is_same_v<Start, start::spawn>;
}  // namespace detail

/// Runs the verb in worker processes started with `Start`: `workers` as for threads. With
/// start::fork the workers are forked at the call and read the inputs (and whatever f refers
/// to) in place, copy-on-write; only indices go out and results come back.
///
///     auto squares = parallel::map(parallel::processes<parallel::start::fork>{}, square, xs);
template <class Start = start::platform_default>
struct processes {
  static_assert(detail::start_available<Start>,
                "parallel::processes<Start>: this platform has no fork(), so start::fork and "
                "start::forkserver are POSIX only; on Windows use parallel::processes<> (which is "
                "start::spawn there) and make parallel::spawn_main(argc, argv) the first "
                "statement of main");
  int workers = 0;
};

/// Runs the verb on the ranks of the MPI job (rank 0 drives, the others compute): the verbs on it
/// need <parallel/mpi.hpp> and the CMake target parallel::mpi. `workers`: 0 = every rank but 0,
/// n > 0 = ranks 1..n. With a single rank, rank 0 runs the tasks itself.
///
///     auto squares = parallel::map(parallel::mpi{}, square, xs);
struct mpi {
  int workers = 0;
};

/// Options of map, starmap, imap and imap_unordered.
///
///     parallel::map(f, xs, {.chunksize = 64, .progress = parallel::progress_bar()});
struct options {
  /// Items per task; 0 = automatic (adapts to the cost of an item).
  std::size_t chunksize = 0;
  /// imap / imap_unordered: bound on items read ahead of the consumer; 0 = automatic (bounded).
  std::size_t max_in_flight = 0;
  /// Off by default; any callable (done, total), or parallel::progress_bar().
  parallel::progress progress = {};
  /// Per task; 0 = none. Enforced by the process backends (a thread cannot be stopped safely).
  std::chrono::milliseconds timeout{0};
};

namespace detail {
template <class T>
struct is_policy : std::false_type {};
template <>
struct is_policy<sequential> : std::true_type {};
template <>
struct is_policy<threads> : std::true_type {};
template <class Start>
struct is_policy<processes<Start>> : std::true_type {};
template <>
struct is_policy<mpi> : std::true_type {};
}  // namespace detail

/// True for the types that may be passed as the first argument of a verb.
template <class T>
concept execution_policy = detail::is_policy<std::remove_cvref_t<T>>::value;

}  // namespace parallel
