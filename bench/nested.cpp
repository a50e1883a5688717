// nested: a map inside a map. 100 outer items, each mapping over 1000 inner items of ~1 us
// and summing them (~100 ms in all). Measures that nested parallelism composes: the inner maps
// run on the same pool without deadlock or oversubscription, and a thread waiting for its inner
// map helps with it instead of idling.
//
// Peers: oneTBB's nested parallel_for (composes the same way), and OpenMP with the outer loop
// parallel only (omp_outer), since nested OpenMP regions are off by default. Every variant
// materialises each inner result as a std::vector, as the inner parallel::map does.
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <parallel/parallel.hpp>
#include <vector>

#include "common.hpp"

namespace {

constexpr std::size_t outer_count = 100;
constexpr std::size_t inner_count = 1000;

std::uint64_t inner_item(std::uint64_t outer, std::uint64_t inner) {
  return parallel_bench::spin(outer * inner_count + inner, parallel_bench::rounds_per_us);
}

std::vector<std::uint64_t> iota_vector(std::size_t count) {
  std::vector<std::uint64_t> v(count);
  std::iota(v.begin(), v.end(), std::uint64_t{0});
  return v;
}

const std::vector<std::uint64_t>& outer_items() {
  static const auto items = iota_vector(outer_count);
  return items;
}

const std::vector<std::uint64_t>& inner_items() {
  static const auto items = iota_vector(inner_count);
  return items;
}

std::uint64_t sum(const std::vector<std::uint64_t>& values) {
  return std::accumulate(values.begin(), values.end(), std::uint64_t{0});
}

// One outer item, sequentially: what omp_outer and sequential run per outer item.
std::uint64_t outer_item_sequential(std::uint64_t outer) {
  const auto& inner = inner_items();
  std::vector<std::uint64_t> results(inner.size());
  for (std::size_t i = 0; i < inner.size(); ++i) {
    results[i] = inner_item(outer, inner[i]);
  }
  return sum(results);
}

void nested_sequential(benchmark::State& state) {
  const auto& outer = outer_items();
  for (auto _ : state) {
    auto out = parallel_bench::fresh_results<std::uint64_t>(outer.size());
    for (std::size_t o = 0; o < outer.size(); ++o) {
      out[o] = outer_item_sequential(outer[o]);
    }
    parallel_bench::keep(out);
  }
  parallel_bench::count_items(state, outer_count * inner_count);
}

std::uint64_t outer_item_parallel_map(std::uint64_t outer) {
  auto results = parallel::map(
      parallel::threads{}, [outer](std::uint64_t inner) { return inner_item(outer, inner); },
      inner_items());
  return sum(results);
}

void nested_parallel_map(benchmark::State& state) {
  const auto& outer = outer_items();
  auto warm = parallel::map(parallel::threads{}, outer_item_parallel_map, outer);
  parallel_bench::keep(warm);
  for (auto _ : state) {
    auto out = parallel::map(parallel::threads{}, outer_item_parallel_map, outer);
    parallel_bench::keep(out);
  }
  parallel_bench::count_items(state, outer_count * inner_count);
}

BENCHMARK(nested_sequential)->Name("nested/sequential")->Apply(parallel_bench::defaults);
BENCHMARK(nested_parallel_map)->Name("nested/parallel_map")->Apply(parallel_bench::defaults);

#if PARALLEL_BENCH_HAVE_OPENMP
void nested_omp_outer(benchmark::State& state) {
  const auto& outer = outer_items();
  const auto n = static_cast<std::ptrdiff_t>(outer.size());
  parallel_bench::warm_openmp();
  for (auto _ : state) {
    auto out = parallel_bench::fresh_results<std::uint64_t>(outer.size());
    std::uint64_t* dst = out.data();
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t o = 0; o < n; ++o) {
      dst[o] = outer_item_sequential(outer[static_cast<std::size_t>(o)]);
    }
    parallel_bench::keep(out);
  }
  parallel_bench::count_items(state, outer_count * inner_count);
}

BENCHMARK(nested_omp_outer)->Name("nested/omp_outer")->Apply(parallel_bench::defaults);
#endif

#if PARALLEL_BENCH_HAVE_TBB
std::uint64_t outer_item_tbb(std::uint64_t outer) {
  const auto& inner = inner_items();
  std::vector<std::uint64_t> results(inner.size());
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, inner.size()),
                    [&](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t i = r.begin(); i != r.end(); ++i) {
                        results[i] = inner_item(outer, inner[i]);
                      }
                    });
  return sum(results);
}

void nested_tbb(benchmark::State& state) {
  const auto& outer = outer_items();
  parallel_bench::warm_tbb();
  for (auto _ : state) {
    auto out = parallel_bench::fresh_results<std::uint64_t>(outer.size());
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, outer.size()),
                      [&](const tbb::blocked_range<std::size_t>& r) {
                        for (std::size_t o = r.begin(); o != r.end(); ++o) {
                          out[o] = outer_item_tbb(outer[o]);
                        }
                      });
    parallel_bench::keep(out);
  }
  parallel_bench::count_items(state, outer_count * inner_count);
}

BENCHMARK(nested_tbb)->Name("nested/tbb")->Apply(parallel_bench::defaults);
#endif

}  // namespace
