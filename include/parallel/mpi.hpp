// parallel::mpi and parallel::mpi_pool: the verbs across the ranks of an MPI job (opt-in: link
// the CMake target parallel::mpi, which brings MPI::MPI_CXX; the core library never needs MPI).
//
//     int main(int argc, char** argv) {
//       parallel::mpi_main(argc, argv);  // ranks other than 0 serve tasks here and never return
//       auto squares = parallel::map(parallel::mpi{}, square, xs);  // rank 0 drives
//     }
//
// Every rank runs the same executable, so f crosses as on a process pool: a function, a
// lambda without captures, or a lambda capturing numbers by value; items, arguments and results
// through parallel::codec. Rank 0 runs the program; the other ranks run its tasks, scheduled
// dynamically (the least busy rank takes the next chunk, two chunks in flight per rank).
#pragma once

// clang-format off
#include "detail/requires_cxx20.hpp"  // first: before any code that needs C++20
// clang-format on

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/mpi/backend.hpp"
#include "detail/mpi/cluster.hpp"
#include "detail/mpi/mpi_api.hpp"
#include "detail/mpi/transport.hpp"
#include "errors.hpp"
#include "future.hpp"
#include "map.hpp"
#include "policy.hpp"
#include "process_pool.hpp"

namespace parallel {

/// The first statement of main in a program that runs verbs on MPI ranks (the twin of
/// spawn_main). It initializes MPI (MPI_THREAD_MULTIPLE when the library provides it, at least
/// MPI_THREAD_SERIALIZED; MPI initialized by the program before is used as it is). On rank 0 it
/// returns at once, and MPI is finalized when the program ends (do not call MPI_Finalize
/// yourself). On every other rank it serves tasks until rank 0's program ends, then finalizes
/// MPI and ends the process with status 0: it never returns there.
///
///     int main(int argc, char** argv) {
///       parallel::mpi_main(argc, argv);
///       ...
///     }
inline void mpi_main(int argc, char** argv) {
  detail::ranks::runtime& rt = detail::ranks::state();
  if (rt.started) return;
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (initialized == 0) {
    detail::ranks::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided),
                         "MPI_Init_thread");
  } else {
    MPI_Query_thread(&provided);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rt.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &rt.size);
  if (rt.rank == 0 && rt.size > 1 && provided < MPI_THREAD_SERIALIZED) {
    std::fprintf(stderr,
                 "parallel::mpi_main: this MPI library provides thread level %d; rank 0 needs "
                 "MPI_THREAD_SERIALIZED or more (its I/O thread makes the MPI calls)\n",
                 provided);
    MPI_Abort(MPI_COMM_WORLD, 70);
  }
  // The library's messages travel on a communicator of its own, which returns errors instead
  // of aborting the job, so that a failure reaches the caller as an exception.
  detail::ranks::check(MPI_Comm_dup(MPI_COMM_WORLD, &rt.comm), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(rt.comm, MPI_ERRORS_RETURN);
  rt.started = true;
  if (rt.rank != 0) detail::ranks::serve();
  std::atexit(&detail::ranks::finish_rank0);
}

/// The ranks of the MPI job as a pool object, with the verbs of process_pool (and submit).
/// All mpi_pool objects and parallel::mpi{} calls share the same ranks.
///
///     parallel::mpi_pool pool;
///     parallel::future<double> r = pool.submit(slow_pow, 3, 2);
class mpi_pool {
 public:
  explicit mpi_pool(const mpi& policy = {})
      : cluster_(&detail::ranks::get_cluster()),
        limit_(detail::ranks::rank_limit(policy.workers)) {}

  /// Ranks that run tasks.
  std::size_t size() const noexcept {
    return detail::ranks::mpi_runner(*cluster_, limit_).workers();
  }

  template <class F, std::ranges::input_range Range>
  auto map(F&& f, Range&& items, const options& opts = {}) {
    detail::ranks::mpi_runner run(*cluster_, limit_);
    return detail::map_outcome([&] { return detail::pool_map<false>(run, f, items, opts); });
  }

  template <class F, std::ranges::input_range Range>
  auto starmap(F&& f, Range&& items, const options& opts = {}) {
    detail::ranks::mpi_runner run(*cluster_, limit_);
    return detail::map_outcome([&] { return detail::pool_map<true>(run, f, items, opts); });
  }

  template <class F, std::ranges::input_range Range>
  auto imap(F&& f, Range&& items, const options& opts = {}) {
    return detail::imap_outcome(detail::pool_imap<true, false>(
        std::make_unique<detail::ranks::mpi_runner>(*cluster_, limit_), std::forward<F>(f),
        std::forward<Range>(items), opts));
  }

  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F&& f, Range&& items, const options& opts = {}) {
    return detail::imap_outcome(detail::pool_imap<false, false>(
        std::make_unique<detail::ranks::mpi_runner>(*cluster_, limit_), std::forward<F>(f),
        std::forward<Range>(items), opts));
  }

  /// Runs f(args...) on a rank; its result (or its exception, as remote_error) in the future.
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    detail::ranks::mpi_runner run(*cluster_, limit_);
    return detail::pool_submit(run, std::forward<F>(f), std::forward<Args>(args)...);
  }

 private:
  detail::ranks::cluster* cluster_;
  std::size_t limit_;
};

}  // namespace parallel
