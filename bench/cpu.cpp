// cpu: 1000 items of ~100 us each (parallel_bench::spin, 74000 dependent hash rounds). Coarse,
// equal items: any scheduler should reach the core count here; this is the sanity check.
//
// Target: parallel_map >= 1.9x faster than sequential on 2 cores, and within 1.1x of tbb.
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "map_variants.hpp"

namespace {

struct cpu {
  static constexpr const char* name = "cpu";
  static constexpr std::ptrdiff_t omp_dynamic_chunk = 1;

  static std::vector<std::uint64_t> make_input() {
    std::vector<std::uint64_t> items(1000);
    std::iota(items.begin(), items.end(), std::uint64_t{0});
    return items;
  }

  std::uint64_t operator()(std::uint64_t x) const noexcept {
    return parallel_bench::spin(x, 100 * parallel_bench::rounds_per_us);
  }
};

[[maybe_unused]] const bool registered = parallel_bench::register_map_variants<cpu>();

}  // namespace
