// parallel::mpi's backend (mpi.hpp): rank 0's cluster, made on first use and ended with the
// program, the runner a call posts its jobs through, and the verbs over the ranks.
#pragma once

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

#include "../../errors.hpp"
#include "../../policy.hpp"
#include "../algorithms/pool_verbs.hpp"
#include "cluster.hpp"
#include "mpi_api.hpp"
#include "transport.hpp"

namespace parallel {

namespace detail {

namespace ranks {

/// Rank 0's cluster, made on first use; ended (and MPI finalized) when the program ends.
struct rank0 {
  std::mutex mutex;
  std::unique_ptr<cluster> ranks;
  bool finished = false;
};

inline rank0& home() {
  // Never destroyed: the exit handler of mpi_main ends it, after every static destructor that
  // might still use it has run.
  static rank0* h = new rank0;
  return *h;
}

inline cluster& get_cluster() {
  const runtime& rt = state();
  if (!rt.started) {
    throw parallel::error(
        "parallel::mpi: MPI is not set up for the library: make parallel::mpi_main(argc, argv) "
        "the first statement of main (every rank runs main; on ranks other than 0 it serves "
        "tasks and never returns)");
  }
  if (rt.serving) {
    throw parallel::error(
        "parallel::mpi: a task running on MPI rank " + std::to_string(rt.rank) +
        " cannot start MPI calls itself (only rank 0 drives); use parallel::threads{} inside a "
        "task");
  }
  rank0& h = home();
  std::lock_guard lock(h.mutex);
  if (h.finished) throw parallel::error("parallel::mpi: MPI was already finalized");
  if (!h.ranks) h.ranks = std::make_unique<cluster>(rt.size);
  return *h.ranks;
}

/// At the end of rank 0's program: the I/O thread finishes, every rank hears stop (a rank still
/// running a task that overran its timeout leaves it: transport.hpp's stop_watch), and MPI is
/// finalized.
inline void finish_rank0() {
  rank0& h = home();
  std::unique_ptr<cluster> ending;
  {
    std::lock_guard lock(h.mutex);
    if (h.finished) return;
    h.finished = true;
    ending = std::move(h.ranks);
  }
  std::fflush(nullptr);
  ending.reset();  // joins the I/O thread
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized != 0) return;  // the program finalized MPI itself: nothing can be sent now
  for (int r = 1; r < state().size; ++r) MPI_Send(nullptr, 0, MPI_BYTE, r, tag_stop, state().comm);
  MPI_Comm_free(&state().comm);
  MPI_Finalize();
}

/// Runs verbs on the cluster for one call or one mpi_pool.
class mpi_runner final : public runner {
 public:
  mpi_runner(cluster& c, std::size_t limit) : cluster_(c), limit_(limit) {}
  void post(std::vector<std::unique_ptr<ipc::job>>& batch) override {
    cluster_.post(batch, limit_);
  }
  void cancel(ipc::job_sink* sink) override { cluster_.cancel(sink); }
  withdrawal withdrawer() override { return {&cluster::withdraw_from, &cluster_}; }
  void wait(std::unique_lock<std::mutex>& lock, std::condition_variable& changed) override {
    changed.wait(lock);
  }
  std::size_t workers() const override {
    const std::size_t all = cluster_.ranks();
    return limit_ == 0 ? all : std::min(all, limit_);
  }

 private:
  cluster& cluster_;
  std::size_t limit_;
};

inline std::size_t rank_limit(int workers) {
  return workers > 0 ? static_cast<std::size_t>(workers) : 0;
}

}  // namespace ranks

template <>
struct backend<mpi> {
  template <class F, class Range>
  static auto map(const mpi& p, F& f, Range& items, const options& opts) {
    using unwrap = unwrap_apply<std::remove_cvref_t<F>>;
    ranks::mpi_runner run(ranks::get_cluster(), ranks::rank_limit(p.workers));
    return pool_map<unwrap::apply>(run, unwrap::get(f), items, opts);
  }

  template <bool Ordered, class F, class Range>
  static auto imap(const mpi& p, F&& f, Range&& items, const options& opts) {
    return pool_imap<Ordered, false>(
        std::make_unique<ranks::mpi_runner>(ranks::get_cluster(), ranks::rank_limit(p.workers)),
        std::forward<F>(f), std::forward<Range>(items), opts);
  }
};

}  // namespace detail

}  // namespace parallel
