// What bench/compare.cpp builds on: the compute kernel that gives an item its cost, the warm-up
// of the peer runtimes, the registration defaults, and the result allocation every variant
// shares.
//
// benchmark::DoNotOptimize is only ever given a const value here: Google Benchmark 1.7.1's
// overload for a non-const lvalue uses the asm constraint "+m,r", which GCC 12 miscompiles (it
// read an uninitialised stack slot instead of the value in a fib benchmark, which crashed the
// run).
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <parallel/parallel.hpp>
#include <thread>
#include <utility>
#include <vector>

#if PARALLEL_BENCH_HAVE_OPENMP
#include <omp.h>
#endif
#if PARALLEL_BENCH_HAVE_TBB
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#endif

namespace parallel_bench {

// spin(seed, rounds) is a chain of dependent multiply-xorshift rounds: it cannot be folded,
// vectorised or overlapped with itself, so its cost is proportional to `rounds` on any
// machine. One round takes ~1.35 ns on the 2-vCPU AMD EPYC the project's CI runs on (~0.8 ns
// when short calls overlap in the out-of-order window); the constants below were measured there
// and are fixed, so every machine does the same work.
inline constexpr std::uint32_t rounds_per_50ns = 60;
inline constexpr std::uint32_t rounds_per_us = 740;

/// The cost of one item: `rounds` dependent hash rounds of `seed`. Not inlined, so that every
/// variant runs the same machine code per item.
[[gnu::noinline]] inline std::uint64_t spin(std::uint64_t seed, std::uint32_t rounds) {
  std::uint64_t x = seed | 1;
  for (std::uint32_t r = 0; r < rounds; ++r) {
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
  }
  return x;
}

/// The OpenMP team is created by the first parallel region; run one before timing.
inline void warm_openmp() {
#if PARALLEL_BENCH_HAVE_OPENMP
  int threads = 0;
#pragma omp parallel
  {
#pragma omp atomic
    threads += 1;
  }
  benchmark::DoNotOptimize(std::as_const(threads));
#endif
}

/// oneTBB starts its workers on first use; run one parallel_for before timing.
inline void warm_tbb() {
#if PARALLEL_BENCH_HAVE_TBB
  tbb::parallel_for(tbb::blocked_range<int>(0, 1024), [](const tbb::blocked_range<int>& r) {
    for (int i = r.begin(); i != r.end(); ++i) {
      benchmark::DoNotOptimize(std::as_const(i));
    }
  });
#endif
}

// Before each run: let the previous variant's runtime (OpenMP's and oneTBB's workers spin for a
// while after a parallel region) go to sleep, so that it does not steal a core from this one.
inline void settle(const benchmark::State&) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

/// Registration defaults: wall-clock time (the CPU time of the benchmark thread says nothing
/// about work done by other threads) and a settled machine. Use as ->Apply(defaults).
inline void defaults(benchmark::internal::Benchmark* b) { b->UseRealTime()->Setup(settle); }

/// Keeps a result alive and written, so that the work producing it cannot be dropped.
template <class T>
void keep(std::vector<T>& out) {
  benchmark::DoNotOptimize(out.data());
  benchmark::ClobberMemory();
}

/// A result vector of n value-initialised slots (or, with `sized == false`, room for n), allocated
/// the way the library allocates the result of a map (parallel::detail::reserve_results: a large
/// one asks for huge pages, whose first touch costs a fraction of 4 KiB pages': here 16 MB of
/// results took ~40 ms of page faults with 4 KiB pages). Every baseline and peer allocates its
/// results with this, so a ratio compares the same work, not two allocation policies.
template <class R>
std::vector<R> fresh_results(std::size_t n, bool sized = true) {
  std::vector<R> out;
  parallel::detail::reserve_results(out, n);
  if (sized) out.resize(n);
  return out;
}

}  // namespace parallel_bench
