// progress: what options.progress costs on a map of 1 ms items (target: under 1%).
// 200 items of ~1 ms on the warm shared pool, without progress, with a (done, total) callable,
// and with parallel::progress_bar() (its output goes to stderr, a terminal or not).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <parallel/parallel.hpp>
#include <vector>

#include "common.hpp"

namespace {

using parallel_bench::count_items;
using parallel_bench::keep;

std::uint64_t item(std::uint64_t x) {
  return parallel_bench::spin(x, 1000 * parallel_bench::rounds_per_us);
}

const std::vector<std::uint64_t>& input() {
  static const auto items = [] {
    std::vector<std::uint64_t> v(200);
    std::iota(v.begin(), v.end(), std::uint64_t{0});
    return v;
  }();
  return items;
}

void sequential(benchmark::State& state) {
  for (auto _ : state) {
    auto out = parallel_bench::fresh_results<std::uint64_t>(input().size());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = item(input()[i]);
    keep(out);
  }
  count_items(state, input().size());
}

void parallel_map(benchmark::State& state) {
  for (auto _ : state) {
    auto out = parallel::map(item, input());
    keep(out);
  }
  count_items(state, input().size());
}

void parallel_map_callback(benchmark::State& state) {
  std::atomic<std::size_t> last{0};
  for (auto _ : state) {
    auto out = parallel::map(item, input(), {.progress = [&](std::size_t done, std::size_t) {
                               last.store(done, std::memory_order_relaxed);
                             }});
    keep(out);
  }
  count_items(state, input().size());
}

void parallel_map_progress_bar(benchmark::State& state) {
  for (auto _ : state) {
    auto out = parallel::map(item, input(), {.progress = parallel::progress_bar("bench")});
    keep(out);
  }
  count_items(state, input().size());
}

BENCHMARK(sequential)->Name("progress/sequential")->Apply(parallel_bench::defaults);
BENCHMARK(parallel_map)->Name("progress/parallel_map")->Apply(parallel_bench::defaults);
BENCHMARK(parallel_map_callback)
    ->Name("progress/parallel_map_callback")
    ->Apply(parallel_bench::defaults);
BENCHMARK(parallel_map_progress_bar)
    ->Name("progress/parallel_map_progress_bar")
    ->Apply(parallel_bench::defaults);

}  // namespace
