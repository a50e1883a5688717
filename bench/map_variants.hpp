// The variants of a flat map, written once so that every flat workload (tiny, small, balanced,
// cpu, irregular) runs exactly the same code around its item function:
//
//   out = [f(x) for x in items]   as a std::vector<R> allocated inside the timed loop, by
//                                 fresh_results (the library's own result allocation)
//
// A workload is a stateless function object W with
//   static constexpr const char* name;                  // "tiny"
//   static constexpr std::ptrdiff_t omp_dynamic_chunk;  // items per OpenMP dynamic chunk
//   static std::vector<input_type> make_input();        // built once, outside the timing
//   R operator()(input_type x) const;                   // one item
// and registers its variants with
//   [[maybe_unused]] const bool registered = parallel_bench::register_map_variants<W>();
//
// The item function is passed as the object W{}, never through a function pointer, so every
// variant can inline it (tiny's loop is vectorised in all of them).
#pragma once

#include <algorithm>
#include <cstddef>
#include <parallel/parallel.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "common.hpp"

#if PARALLEL_BENCH_HAVE_TBB
#include <execution>
#endif

namespace parallel_bench {

template <class W>
using map_input_t = typename decltype(W::make_input())::value_type;
template <class W>
using map_result_t = std::invoke_result_t<const W&, const map_input_t<W>&>;

template <class W>
const std::vector<map_input_t<W>>& map_input() {
  static const auto items = W::make_input();
  return items;
}

/// The baseline: std::transform into a vector allocated here, in the calling thread.
template <class W>
void map_sequential(benchmark::State& state) {
  const auto& in = map_input<W>();
  for (auto _ : state) {
    auto out = fresh_results<map_result_t<W>>(in.size());
    std::transform(in.begin(), in.end(), out.begin(), W{});
    keep(out);
  }
  count_items(state, in.size());
}

/// parallel::map with the sequential policy: the verb's own overhead over the plain loop.
template <class W>
void map_sequential_policy(benchmark::State& state) {
  const auto& in = map_input<W>();
  for (auto _ : state) {
    auto out = parallel::map(parallel::sequential{}, W{}, in);
    keep(out);
  }
  count_items(state, in.size());
}

/// parallel::map on the shared pool of parallel::threads{}, warmed by one call.
template <class W>
void map_parallel_map(benchmark::State& state) {
  const auto& in = map_input<W>();
  auto warm = parallel::map(parallel::threads{}, W{}, in);
  keep(warm);
  for (auto _ : state) {
    auto out = parallel::map(parallel::threads{}, W{}, in);
    keep(out);
  }
  count_items(state, in.size());
}

#if PARALLEL_BENCH_HAVE_OPENMP
template <class W>
void map_omp_static(benchmark::State& state) {
  const auto& in = map_input<W>();
  const auto n = static_cast<std::ptrdiff_t>(in.size());
  warm_openmp();
  for (auto _ : state) {
    auto out = fresh_results<map_result_t<W>>(in.size());
    const auto* src = in.data();
    auto* dst = out.data();
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      dst[i] = W{}(src[i]);
    }
    keep(out);
  }
  count_items(state, in.size());
}

template <class W>
void map_omp_dynamic(benchmark::State& state) {
  const auto& in = map_input<W>();
  const auto n = static_cast<std::ptrdiff_t>(in.size());
  const std::ptrdiff_t chunk = W::omp_dynamic_chunk;
  warm_openmp();
  for (auto _ : state) {
    auto out = fresh_results<map_result_t<W>>(in.size());
    const auto* src = in.data();
    auto* dst = out.data();
#pragma omp parallel for schedule(dynamic, chunk)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      dst[i] = W{}(src[i]);
    }
    keep(out);
  }
  count_items(state, in.size());
}
#endif

#if PARALLEL_BENCH_HAVE_TBB
/// tbb::parallel_for over a blocked_range with the default (auto) partitioner and grainsize.
template <class W>
void map_tbb(benchmark::State& state) {
  const auto& in = map_input<W>();
  warm_tbb();
  for (auto _ : state) {
    auto out = fresh_results<map_result_t<W>>(in.size());
    const auto* src = in.data();
    auto* dst = out.data();
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, in.size()),
                      [=](const tbb::blocked_range<std::size_t>& r) {
                        for (std::size_t i = r.begin(); i != r.end(); ++i) {
                          dst[i] = W{}(src[i]);
                        }
                      });
    keep(out);
  }
  count_items(state, in.size());
}

/// std::transform(std::execution::par, ...): libstdc++ runs it on oneTBB.
template <class W>
void map_std_par(benchmark::State& state) {
  const auto& in = map_input<W>();
  warm_tbb();
  for (auto _ : state) {
    auto out = fresh_results<map_result_t<W>>(in.size());
    std::transform(std::execution::par, in.begin(), in.end(), out.begin(), W{});
    keep(out);
  }
  count_items(state, in.size());
}
#endif

/// Registers "<W::name>/<variant>" for every variant available in this build.
template <class W>
bool register_map_variants() {
  using function = void (*)(benchmark::State&);
  auto add = [](const char* variant, function run) {
    const std::string name = std::string(W::name) + "/" + variant;
    benchmark::RegisterBenchmark(name.c_str(), run)->Apply(defaults);
  };
  add("sequential", &map_sequential<W>);
  add("sequential_policy", &map_sequential_policy<W>);
  add("parallel_map", &map_parallel_map<W>);
#if PARALLEL_BENCH_HAVE_OPENMP
  add("omp_static", &map_omp_static<W>);
  add("omp_dynamic", &map_omp_dynamic<W>);
#endif
#if PARALLEL_BENCH_HAVE_TBB
  add("tbb", &map_tbb<W>);
  add("std_par", &map_std_par<W>);
#endif
  return true;
}

}  // namespace parallel_bench
