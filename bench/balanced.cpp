// balanced: 1e6 items of ~50 ns each (parallel_bench::spin, 60 dependent hash rounds). Equal
// items, but too small to be a task each: this measures automatic chunking.
//
// Target: parallel_map >= 1.9x faster than sequential on 2 cores, and within 1.1x of tbb.
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "map_variants.hpp"

namespace {

struct balanced {
  static constexpr const char* name = "balanced";
  static constexpr std::ptrdiff_t omp_dynamic_chunk = 1024;  // ~50 us per chunk

  static std::vector<std::uint64_t> make_input() {
    std::vector<std::uint64_t> items(1'000'000);
    std::iota(items.begin(), items.end(), std::uint64_t{0});
    return items;
  }

  std::uint64_t operator()(std::uint64_t x) const noexcept {
    return parallel_bench::spin(x, parallel_bench::rounds_per_50ns);
  }
};

[[maybe_unused]] const bool registered = parallel_bench::register_map_variants<balanced>();

}  // namespace
