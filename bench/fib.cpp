// fib: fib(30) computed by naive recursion where every call with n >= 2 submits fib(n-1) as a
// task and computes fib(n-2) itself, with no cutoff: 1,346,268 tasks of a few nanoseconds each,
// each waited for by its parent from inside the pool. Measures the cost of a task (spawn, steal,
// join) and that a task blocked in future::get keeps its worker busy with other tasks rather
// than deadlocking the pool.
//
// The counter ns_per_call is the time divided by the 2,692,537 calls of fib(30) (=
// 2 * fib(31) - 1). Peers: oneTBB's task_group and parallel_invoke with the same shape, and the
// sequential recursion. Targets: pool_submit <= 10 ns per call; parallel_join (the fork-join
// primitive, fib(n-1) and fib(n-2) joined at every call) <= 3 ns per call.
#include <cstdint>
#include <parallel/parallel.hpp>

#include "common.hpp"

#if PARALLEL_BENCH_HAVE_TBB
#include <tbb/parallel_invoke.h>
#include <tbb/task_group.h>
#endif

namespace {

constexpr int fib_n = 30;

// Calls made by the naive recursion: calls(n) = 1 + calls(n-1) + calls(n-2) = 2 * fib(n+1) - 1.
constexpr std::uint64_t fib_calls(int n) {
  std::uint64_t a = 0;  // fib(k)
  std::uint64_t b = 1;  // fib(k+1)
  for (int k = 0; k < n; ++k) {
    const std::uint64_t next = a + b;
    a = b;
    b = next;
  }
  return 2 * b - 1;
}
static_assert(fib_calls(30) == 2'692'537);

constexpr std::uint64_t fib_30 = 832'040;

// The argument, read through a volatile so that the compiler cannot fold the recursion.
volatile int fib_argument = fib_n;

int opaque_n() { return fib_argument; }

void check(benchmark::State& state, std::uint64_t result) {
  if (result != fib_30) {
    state.SkipWithError("fib(30) computed a wrong result");
  }
}

[[gnu::noinline]] std::uint64_t fib_recursive(int n) {
  return n < 2 ? static_cast<std::uint64_t>(n) : fib_recursive(n - 1) + fib_recursive(n - 2);
}

std::uint64_t fib_via_submit(parallel::thread_pool& pool, int n) {
  if (n < 2) {
    return static_cast<std::uint64_t>(n);
  }
  auto left = pool.submit([&pool, n] { return fib_via_submit(pool, n - 1); });
  const std::uint64_t right = fib_via_submit(pool, n - 2);
  return left.get() + right;
}

void fib_sequential(benchmark::State& state) {
  for (auto _ : state) {
    const std::uint64_t result = fib_recursive(opaque_n());
    check(state, result);
  }
  state.counters["ns_per_call"] = parallel_bench::ns_per(fib_calls(fib_n));
}

// The root runs in the pool too, so the benchmark thread only waits, as it does for a map.
void fib_pool_submit(benchmark::State& state) {
  parallel::thread_pool pool;
  pool.submit([] {}).get();  // warm
  for (auto _ : state) {
    const int n = opaque_n();
    const std::uint64_t result = pool.submit([&pool, n] { return fib_via_submit(pool, n); }).get();
    check(state, result);
  }
  state.counters["ns_per_call"] = parallel_bench::ns_per(fib_calls(fib_n));
}

std::uint64_t fib_via_join(int n) {
  if (n < 2) {
    return static_cast<std::uint64_t>(n);
  }
  const auto [left, right] =
      parallel::join([n] { return fib_via_join(n - 1); }, [n] { return fib_via_join(n - 2); });
  return left + right;
}

// parallel::join from the benchmark thread: the root goes to the default pool, the benchmark
// thread waits.
void fib_parallel_join(benchmark::State& state) {
  (void)parallel::join([] { return 0; }, [] { return 0; });  // warm the default pool
  for (auto _ : state) {
    check(state, fib_via_join(opaque_n()));
  }
  state.counters["ns_per_call"] = parallel_bench::ns_per(fib_calls(fib_n));
}

BENCHMARK(fib_sequential)
    ->Name("fib/sequential")
    ->Apply(parallel_bench::defaults)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(fib_pool_submit)
    ->Name("fib/pool_submit")
    ->Apply(parallel_bench::defaults)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(fib_parallel_join)
    ->Name("fib/parallel_join")
    ->Apply(parallel_bench::defaults)
    ->Unit(benchmark::kMillisecond);

#if PARALLEL_BENCH_HAVE_TBB
std::uint64_t fib_via_task_group(int n) {
  if (n < 2) {
    return static_cast<std::uint64_t>(n);
  }
  std::uint64_t left = 0;
  tbb::task_group group;
  group.run([&left, n] { left = fib_via_task_group(n - 1); });
  const std::uint64_t right = fib_via_task_group(n - 2);
  group.wait();
  return left + right;
}

std::uint64_t fib_via_invoke(int n) {
  if (n < 2) {
    return static_cast<std::uint64_t>(n);
  }
  std::uint64_t left = 0;
  std::uint64_t right = 0;
  tbb::parallel_invoke([&left, n] { left = fib_via_invoke(n - 1); },
                       [&right, n] { right = fib_via_invoke(n - 2); });
  return left + right;
}

void fib_tbb_task_group(benchmark::State& state) {
  parallel_bench::warm_tbb();
  for (auto _ : state) {
    check(state, fib_via_task_group(opaque_n()));
  }
  state.counters["ns_per_call"] = parallel_bench::ns_per(fib_calls(fib_n));
}

void fib_tbb_parallel_invoke(benchmark::State& state) {
  parallel_bench::warm_tbb();
  for (auto _ : state) {
    check(state, fib_via_invoke(opaque_n()));
  }
  state.counters["ns_per_call"] = parallel_bench::ns_per(fib_calls(fib_n));
}

BENCHMARK(fib_tbb_task_group)
    ->Name("fib/tbb_task_group")
    ->Apply(parallel_bench::defaults)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(fib_tbb_parallel_invoke)
    ->Name("fib/tbb_parallel_invoke")
    ->Apply(parallel_bench::defaults)
    ->Unit(benchmark::kMillisecond);
#endif

}  // namespace
