// submit: 1e5 empty tasks submitted one by one from outside the pool, keeping every future,
// then waiting for all of them (Python's [pool.apply_async(f) for ...] then [r.get() for ...]).
// Measures the cost of submit + future for a caller that is not a worker: queueing from an
// external thread, waking workers, and completing a future.
//
// The counter ns_per_task is the time divided by the 1e5 tasks. Peer: oneTBB's task_group::run
// of the same 1e5 empty tasks, then wait() (no futures: task_group has none). Target:
// pool_submit <= 300 ns per task.
#include <cstddef>
#include <parallel/parallel.hpp>
#include <vector>

#include "common.hpp"

#if PARALLEL_BENCH_HAVE_TBB
#include <tbb/task_group.h>
#endif

namespace {

constexpr std::size_t task_count = 100'000;

void submit_pool_submit(benchmark::State& state) {
  parallel::thread_pool pool;
  pool.submit([] {}).get();  // warm
  for (auto _ : state) {
    std::vector<parallel::future<void>> futures;
    futures.reserve(task_count);
    for (std::size_t i = 0; i < task_count; ++i) {
      futures.push_back(pool.submit([] {}));
    }
    for (auto& future : futures) {
      future.get();
    }
  }
  parallel_bench::count_items(state, task_count);
  state.counters["ns_per_task"] = parallel_bench::ns_per(task_count);
}

BENCHMARK(submit_pool_submit)
    ->Name("submit/pool_submit")
    ->Apply(parallel_bench::defaults)
    ->Unit(benchmark::kMillisecond);

#if PARALLEL_BENCH_HAVE_TBB
void submit_tbb_task_group(benchmark::State& state) {
  parallel_bench::warm_tbb();
  for (auto _ : state) {
    tbb::task_group group;
    for (std::size_t i = 0; i < task_count; ++i) {
      group.run([] {});
    }
    group.wait();
  }
  parallel_bench::count_items(state, task_count);
  state.counters["ns_per_task"] = parallel_bench::ns_per(task_count);
}

BENCHMARK(submit_tbb_task_group)
    ->Name("submit/tbb_task_group")
    ->Apply(parallel_bench::defaults)
    ->Unit(benchmark::kMillisecond);
#endif

}  // namespace
