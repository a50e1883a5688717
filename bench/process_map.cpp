// process_map: the process backend's workloads, each as a sequential loop, as a
// fork-per-call map (parallel::processes<start::fork>: workers forked at the call, timed with
// the call) and on a persistent parallel::process_pool<start::fork> (started and warmed outside
// the timing). bench/peers/process_peers.py runs the same workloads through Python's
// multiprocessing.Pool, ProcessPoolExecutor and joblib; bench/report.py puts them side by side.
//
//   process_noop_chunk1   20000 no-op tasks at chunksize 1, 2 workers     counter us_per_task
//   process_noop_batched  1e6 no-op items, automatic chunksize, 2 workers  counter us_per_item
//   process_cpu_1ms       200 items of ~1 ms (spin), 2 workers             speedup vs sequential
//   process_sleep_10ms    100 items of a 10 ms sleep, 4 workers            time (ideal 250 ms)
//   process_results_1mib  200 results of 1 MiB (std::vector<char>)         counter GB_per_s
//   process_startup       a pool of 2 workers + one task + shutdown        time
//   process_roundtrip     1000 tasks one at a time (submit, get), pool     counter us_per_task
//
// startup and roundtrip run for each start method (fork, spawn, forkserver; startup also per
// call), next to Python's Pool with each start method.
//
// Targets (2 cores): <= 5 us per task at chunksize 1; <= 0.3 us per item batched;
// >= 1.9x the sequential loop on 1 ms items; 1 MiB results at >= 10x the throughput of Python's
// Pool; a fork pool of 2 ready, one task run and shut down in <= 2 ms; a spawn pool
// of 2 in <= 20 ms and >= 5x faster than Python's spawn Pool; a forkserver pool in <= 3 ms once
// the server runs; a round trip on spawned or forkserver workers the same as on forked ones.
//
// sleep_10ms has no sequential variant: it would take 1 s an iteration to say 100 x 10 ms.
// POSIX only. main() starts with parallel::spawn_main: spawned workers run this program again.
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <parallel/parallel.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common.hpp"

namespace {

using fork_processes = parallel::processes<parallel::start::fork>;
using fork_pool = parallel::process_pool<parallel::start::fork>;
using parallel_bench::keep;

constexpr std::size_t mebibyte = std::size_t{1} << 20;

// --- counters ---------------------------------------------------------------------------------

/// Microseconds per unit of work, `units` units per iteration.
benchmark::Counter us_per(double units) {
  return benchmark::Counter(
      units / 1e6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

/// Gigabytes (1e9 bytes) per second, `bytes` bytes per iteration.
benchmark::Counter gb_per_s(double bytes) {
  return benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// --- the items --------------------------------------------------------------------------------

std::vector<int> iota_items(std::size_t n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

/// The item functions are stateless lambdas: their type names the code, so they cross to a
/// worker without registration, and the sequential loop calls the very same function.
constexpr auto noop = [](int x) { return x; };
constexpr auto cpu_1ms = [](int x) {
  return parallel_bench::spin(static_cast<std::uint64_t>(x), 1000 * parallel_bench::rounds_per_us);
};
constexpr auto sleep_10ms = [](int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return x;
};
/// 1 MiB filled from x: built in the worker, it has to come back whole.
constexpr auto one_mebibyte = [](int x) {
  return std::vector<char>(mebibyte, static_cast<char>(x));
};
constexpr auto child_pid = [](int) { return static_cast<long>(::getpid()); };

/// One workload: its items, its function, the workers and options of the parallel variants.
template <class F>
struct workload {
  std::vector<int> items;
  F f;
  int workers;
  parallel::options options;
};

/// The results of a parallel variant, compared with the sequential ones once, after timing.
template <class F, class R>
bool same_as_sequential(const workload<F>& w, const std::vector<R>& out) {
  if (out.size() != w.items.size()) return false;
  for (std::size_t i : {std::size_t{0}, out.size() / 2, out.size() - 1}) {
    if (!(out[i] == w.f(w.items[i]))) return false;
  }
  return true;
}

// --- the variants -----------------------------------------------------------------------------

template <class F>
void run_sequential(benchmark::State& state, const workload<F>& w) {
  using result = decltype(w.f(0));
  for (auto _ : state) {
    auto out = parallel_bench::fresh_results<result>(w.items.size(), false);
    for (int x : w.items) out.push_back(w.f(x));
    keep(out);
  }
}

template <class F>
void run_processes_fork(benchmark::State& state, const workload<F>& w) {
  decltype(parallel::map(fork_processes{}, w.f, w.items, w.options)) out;
  for (auto _ : state) {
    out = parallel::map(fork_processes{.workers = w.workers}, w.f, w.items, w.options);
    keep(out);
  }
  if (!same_as_sequential(w, out)) state.SkipWithError("wrong results");
}

template <class F>
void run_process_pool_fork(benchmark::State& state, const workload<F>& w) {
  fork_pool pool{{.workers = w.workers}};
  auto out = pool.map(w.f, w.items, w.options);  // warm: workers started, code paths touched
  for (auto _ : state) {
    out = pool.map(w.f, w.items, w.options);
    keep(out);
  }
  if (!same_as_sequential(w, out)) state.SkipWithError("wrong results");
}

// --- the workloads ----------------------------------------------------------------------------

const auto& noop_chunk1_work() {
  static const workload<decltype(noop)> w{iota_items(20000), noop, 2, {.chunksize = 1}};
  return w;
}
const auto& noop_batched_work() {
  static const workload<decltype(noop)> w{iota_items(1'000'000), noop, 2, {}};
  return w;
}
const auto& cpu_work() {
  static const workload<decltype(cpu_1ms)> w{iota_items(200), cpu_1ms, 2, {}};
  return w;
}
const auto& sleep_work() {
  static const workload<decltype(sleep_10ms)> w{iota_items(100), sleep_10ms, 4, {}};
  return w;
}
const auto& results_work() {
  static const workload<decltype(one_mebibyte)> w{iota_items(200), one_mebibyte, 2, {}};
  return w;
}

/// Registers "<name>/<variant>" for the three variants of a workload, with `counter(state)`
/// set after each run.
template <class Get, class Counter>
void register_workload(const std::string& name, Get get, bool with_sequential, Counter counter) {
  auto add = [&](const char* variant, auto run) {
    benchmark::RegisterBenchmark((name + "/" + variant).c_str(),
                                 [get, counter, run](benchmark::State& state) {
                                   run(state, get());
                                   counter(state);
                                 })
        ->Apply(parallel_bench::defaults)
        ->Unit(benchmark::kMillisecond);
  };
  if (with_sequential) {
    add("sequential", [](benchmark::State& s, const auto& w) { run_sequential(s, w); });
  }
  add("processes_fork", [](benchmark::State& s, const auto& w) { run_processes_fork(s, w); });
  add("process_pool_fork", [](benchmark::State& s, const auto& w) { run_process_pool_fork(s, w); });
}

// --- start-up ---------------------------------------------------------------------------------

/// A pool of 2 workers, one task (which must run in a child) and shutdown, as a user pays it.
/// With start::forkserver the server is already running (the warm-up started it): the figure
/// is what each pool costs after the first.
template <class Start>
void startup_process_pool(benchmark::State& state) {
  long pid = 0;
  for (auto _ : state) {
    parallel::process_pool<Start> pool{{.workers = 2}};
    pid = pool.submit(child_pid, 0).get();
    benchmark::DoNotOptimize(std::as_const(pid));
  }
  if (pid == static_cast<long>(::getpid())) state.SkipWithError("the task ran in the parent");
}

/// The same through a per-call map of one item (workers started for the call).
template <class Start>
void startup_processes(benchmark::State& state) {
  const std::vector<int> one{0};
  std::vector<long> pids;
  for (auto _ : state) {
    pids = parallel::map(parallel::processes<Start>{.workers = 2}, child_pid, one);
    keep(pids);
  }
  if (pids.size() != 1 || pids[0] == static_cast<long>(::getpid())) {
    state.SkipWithError("the task ran in the parent");
  }
}

// --- round trip -------------------------------------------------------------------------------

constexpr int roundtrip_tasks = 1000;

/// One task at a time on a warm pool of 2: submit, then get before the next submit. The latency
/// of a call, where noop_chunk1 measures throughput with many calls in flight.
template <class Start>
void roundtrip_process_pool(benchmark::State& state) {
  parallel::process_pool<Start> pool{{.workers = 2}};
  (void)pool.submit(noop, 0).get();
  long sum = 0;
  for (auto _ : state) {
    for (int i = 0; i < roundtrip_tasks; ++i) sum += pool.submit(noop, i).get();
  }
  const long per_iteration = static_cast<long>(roundtrip_tasks) * (roundtrip_tasks - 1) / 2;
  if (sum != per_iteration * static_cast<long>(state.iterations()))
    state.SkipWithError("wrong results");
  state.counters["us_per_task"] = us_per(roundtrip_tasks);
}

[[maybe_unused]] const bool registered = [] {
  const auto none = [](benchmark::State&) {};
  register_workload("process_noop_chunk1", noop_chunk1_work, true, [](benchmark::State& state) {
    state.counters["us_per_task"] = us_per(static_cast<double>(noop_chunk1_work().items.size()));
  });
  register_workload("process_noop_batched", noop_batched_work, true, [](benchmark::State& state) {
    state.counters["us_per_item"] = us_per(static_cast<double>(noop_batched_work().items.size()));
  });
  register_workload("process_cpu_1ms", cpu_work, true, none);
  register_workload("process_sleep_10ms", sleep_work, false, none);
  register_workload("process_results_1mib", results_work, true, [](benchmark::State& state) {
    state.counters["GB_per_s"] =
        gb_per_s(static_cast<double>(results_work().items.size() * mebibyte));
  });
  const auto add = [](const char* name, void (*run)(benchmark::State&), benchmark::TimeUnit unit) {
    benchmark::RegisterBenchmark(name, run)->Apply(parallel_bench::defaults)->Unit(unit);
  };
  using parallel::start::fork;
  using parallel::start::forkserver;
  using parallel::start::spawn;
  add("process_startup/processes_fork", startup_processes<fork>, benchmark::kMillisecond);
  add("process_startup/process_pool_fork", startup_process_pool<fork>, benchmark::kMillisecond);
  add("process_startup/processes_spawn", startup_processes<spawn>, benchmark::kMillisecond);
  add("process_startup/process_pool_spawn", startup_process_pool<spawn>, benchmark::kMillisecond);
  add("process_startup/processes_forkserver", startup_processes<forkserver>,
      benchmark::kMillisecond);
  add("process_startup/process_pool_forkserver", startup_process_pool<forkserver>,
      benchmark::kMillisecond);
  add("process_roundtrip/process_pool_fork", roundtrip_process_pool<fork>, benchmark::kMillisecond);
  add("process_roundtrip/process_pool_spawn", roundtrip_process_pool<spawn>,
      benchmark::kMillisecond);
  add("process_roundtrip/process_pool_forkserver", roundtrip_process_pool<forkserver>,
      benchmark::kMillisecond);
  return true;
}();

}  // namespace

/// Spawned workers run this executable again: spawn_main, first, turns them into workers.
int main(int argc, char** argv) {
  parallel::spawn_main(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
