// mpi_map: parallel::mpi across the ranks of an MPI job, next to processes<start::fork> with as
// many workers as there are serving ranks, and the sequential loop. Run it under
// mpirun; rank 0 runs the benchmarks, the other ranks serve:
//
//   mpirun --allow-run-as-root --oversubscribe -np 3 build/bench/bench_mpi_map
//
//   mpi_cpu_1ms       200 items of ~1 ms (spin)                  speedup vs sequential
//   mpi_results_1mib  64 results of 1 MiB (std::vector<char>)    counter GB_per_s
//   mpi_roundtrip     1000 tasks one at a time (submit, get)     counter us_per_task
//
// Each has a sequential/ variant (not for roundtrip), an mpi/ variant (parallel::mpi{}, or an
// mpi_pool for submit) and a fork/ variant (processes<start::fork>{.workers = ranks - 1}, or a
// process_pool<start::fork> for submit), in one run, so ratios are taken on the same machine
// state. With -np 1 the mpi/ variants run in rank 0 itself (no serving rank).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <parallel/mpi.hpp>
#include <parallel/parallel.hpp>
#include <vector>

#include "common.hpp"

namespace {

using parallel_bench::keep;
using fork_processes = parallel::processes<parallel::start::fork>;

constexpr std::size_t mebibyte = std::size_t{1} << 20;

int serving_ranks() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return std::max(1, size - 1);
}

std::vector<int> iota_items(std::size_t n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

constexpr auto cpu_1ms = [](int x) {
  return parallel_bench::spin(static_cast<std::uint64_t>(x), 1000 * parallel_bench::rounds_per_us);
};
constexpr auto one_mebibyte = [](int x) {
  return std::vector<char>(mebibyte, static_cast<char>(x));
};
constexpr auto noop = [](int x) { return x; };

template <class F>
void sequential(benchmark::State& state, F f, std::size_t n) {
  const auto items = iota_items(n);
  for (auto _ : state) {
    auto out = parallel_bench::fresh_results<decltype(f(0))>(items.size(), false);
    for (int x : items) out.push_back(f(x));
    keep(out);
  }
}

template <class F>
void on_mpi(benchmark::State& state, F f, std::size_t n) {
  const auto items = iota_items(n);
  auto out = parallel::map(parallel::mpi{}, f, items);  // warm
  for (auto _ : state) {
    out = parallel::map(parallel::mpi{}, f, items);
    keep(out);
  }
  if (out.size() != n || !(out.back() == f(items.back()))) state.SkipWithError("wrong results");
}

template <class F>
void on_fork(benchmark::State& state, F f, std::size_t n) {
  const auto items = iota_items(n);
  decltype(parallel::map(fork_processes{}, f, items)) out;
  for (auto _ : state) {
    out = parallel::map(fork_processes{.workers = serving_ranks()}, f, items);
    keep(out);
  }
  if (out.size() != n || !(out.back() == f(items.back()))) state.SkipWithError("wrong results");
}

benchmark::Counter gb_per_s(double bytes) {
  return benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
benchmark::Counter us_per(double units) {
  return benchmark::Counter(
      units / 1e6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

constexpr std::size_t cpu_items = 200;
constexpr std::size_t result_items = 64;
constexpr std::size_t roundtrips = 1000;

void BM_cpu_sequential(benchmark::State& s) { sequential(s, cpu_1ms, cpu_items); }
void BM_cpu_mpi(benchmark::State& s) { on_mpi(s, cpu_1ms, cpu_items); }
void BM_cpu_fork(benchmark::State& s) { on_fork(s, cpu_1ms, cpu_items); }

void BM_results_sequential(benchmark::State& s) {
  sequential(s, one_mebibyte, result_items);
  s.counters["GB_per_s"] = gb_per_s(static_cast<double>(result_items * mebibyte));
}
void BM_results_mpi(benchmark::State& s) {
  on_mpi(s, one_mebibyte, result_items);
  s.counters["GB_per_s"] = gb_per_s(static_cast<double>(result_items * mebibyte));
}
void BM_results_fork(benchmark::State& s) {
  on_fork(s, one_mebibyte, result_items);
  s.counters["GB_per_s"] = gb_per_s(static_cast<double>(result_items * mebibyte));
}

template <class Pool>
void roundtrip(benchmark::State& state, Pool& pool) {
  (void)pool.submit(noop, 0).get();  // warm
  for (auto _ : state) {
    for (std::size_t i = 0; i < roundtrips; ++i) {
      int r = pool.submit(noop, static_cast<int>(i)).get();
      benchmark::DoNotOptimize(r);
    }
  }
  state.counters["us_per_task"] = us_per(static_cast<double>(roundtrips));
}
void BM_roundtrip_mpi(benchmark::State& s) {
  parallel::mpi_pool pool;
  roundtrip(s, pool);
}
void BM_roundtrip_fork(benchmark::State& s) {
  parallel::process_pool<parallel::start::fork> pool{{.workers = serving_ranks()}};
  roundtrip(s, pool);
}

}  // namespace

BENCHMARK(BM_cpu_sequential)
    ->Name("mpi_cpu_1ms/sequential")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_cpu_mpi)->Name("mpi_cpu_1ms/mpi")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_cpu_fork)->Name("mpi_cpu_1ms/fork")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_results_sequential)
    ->Name("mpi_results_1mib/sequential")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_results_mpi)
    ->Name("mpi_results_1mib/mpi")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_results_fork)
    ->Name("mpi_results_1mib/fork")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_roundtrip_mpi)
    ->Name("mpi_roundtrip/mpi")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_roundtrip_fork)
    ->Name("mpi_roundtrip/fork")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

int main(int argc, char** argv) {
  parallel::mpi_main(argc, argv);  // ranks other than 0 serve the mpi/ variants' tasks here
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
