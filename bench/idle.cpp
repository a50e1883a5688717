// idle: what a pool costs while it has nothing to do. Each variant runs one map of 1000 items of
// ~10 us (so every worker has woken up and worked), then the benchmark thread sleeps for one
// second, and the CPU time consumed meanwhile by every other thread of the process is the
// counter cpu_s. A pool whose workers spin or poll shows up here; one whose workers block shows
// 0 (plus whatever spinning it does in the first moments before it blocks).
//
// The reported time is the length of the idle period (manual time, one iteration), not a cost.
// Target: cpu_s == 0 for a parallel::thread_pool.
#include <time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <parallel/parallel.hpp>
#include <thread>
#include <vector>

#include "common.hpp"

namespace {

constexpr auto idle_period = std::chrono::seconds(1);
constexpr std::size_t item_count = 1000;

std::uint64_t work_item(std::uint64_t x) {
  return parallel_bench::spin(x, 10 * parallel_bench::rounds_per_us);
}

const std::vector<std::uint64_t>& items() {
  static const std::vector<std::uint64_t> values = [] {
    std::vector<std::uint64_t> v(item_count);
    std::iota(v.begin(), v.end(), std::uint64_t{0});
    return v;
  }();
  return values;
}

double cpu_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Sleeps for the idle period; reports the CPU time of all threads but this one meanwhile.
void measure_idle(benchmark::State& state) {
  const double process_before = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  const double self_before = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  const auto wall_before = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(idle_period);
  const auto wall = std::chrono::steady_clock::now() - wall_before;
  const double self = cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - self_before;
  const double process = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - process_before;
  state.SetIterationTime(std::chrono::duration<double>(wall).count());
  state.counters["cpu_s"] = process - self;
}

// Longer than the other benchmarks' settle: the process CPU clock also counts OpenMP's and
// oneTBB's workers, which keep spinning for a while after the variant that ran before this one.
void settle_long(const benchmark::State&) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
}

void register_idle(const char* name, void (*run)(benchmark::State&)) {
  benchmark::RegisterBenchmark(name, run)
      ->Setup(settle_long)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

// A fresh parallel::thread_pool, one map, then idle.
void idle_thread_pool(benchmark::State& state) {
  for (auto _ : state) {
    parallel::thread_pool pool;
    auto out = pool.map(work_item, items());
    parallel_bench::keep(out);
    measure_idle(state);
  }
}

// The shared pool behind parallel::threads{}, which outlives the call.
void idle_parallel_map(benchmark::State& state) {
  for (auto _ : state) {
    auto out = parallel::map(parallel::threads{}, work_item, items());
    parallel_bench::keep(out);
    measure_idle(state);
  }
}

#if PARALLEL_BENCH_HAVE_OPENMP
void idle_omp_static(benchmark::State& state) {
  const auto& in = items();
  const auto n = static_cast<std::ptrdiff_t>(in.size());
  for (auto _ : state) {
    auto out = parallel_bench::fresh_results<std::uint64_t>(in.size());
    std::uint64_t* dst = out.data();
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      dst[i] = work_item(in[static_cast<std::size_t>(i)]);
    }
    parallel_bench::keep(out);
    measure_idle(state);
  }
}
#endif

#if PARALLEL_BENCH_HAVE_TBB
void idle_tbb(benchmark::State& state) {
  const auto& in = items();
  for (auto _ : state) {
    auto out = parallel_bench::fresh_results<std::uint64_t>(in.size());
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, in.size()),
                      [&](const tbb::blocked_range<std::size_t>& r) {
                        for (std::size_t i = r.begin(); i != r.end(); ++i) {
                          out[i] = work_item(in[i]);
                        }
                      });
    parallel_bench::keep(out);
    measure_idle(state);
  }
}
#endif

[[maybe_unused]] const bool registered = [] {
  register_idle("idle/thread_pool", idle_thread_pool);
  register_idle("idle/parallel_map", idle_parallel_map);
#if PARALLEL_BENCH_HAVE_OPENMP
  register_idle("idle/omp_static", idle_omp_static);
#endif
#if PARALLEL_BENCH_HAVE_TBB
  register_idle("idle/tbb", idle_tbb);
#endif
  return true;
}();

}  // namespace
