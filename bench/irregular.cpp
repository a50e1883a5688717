// irregular: 400 items whose costs range from ~1 us to ~1000 us, item i costing
// 1 + 999 * (i / 399)^3 microseconds of parallel_bench::spin: cheap items first, and the last
// eighth of the items carries ~40% of the work (~100 ms in all). A static split into halves
// gives one thread 94% of the work, so this measures load balancing: stealing or dynamic
// scheduling, and how automatic chunking copes with items whose cost it cannot guess from the
// first ones.
//
// Target: parallel_map at least as fast as omp_dynamic and tbb.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "map_variants.hpp"

namespace {

struct irregular {
  static constexpr const char* name = "irregular";
  static constexpr std::ptrdiff_t omp_dynamic_chunk = 1;

  static constexpr std::size_t item_count = 400;

  // An item is its own cost in spin rounds, so the item function needs nothing else.
  static std::vector<std::uint32_t> make_input() {
    std::vector<std::uint32_t> items(item_count);
    for (std::size_t i = 0; i < item_count; ++i) {
      const double x = static_cast<double>(i) / static_cast<double>(item_count - 1);
      const double multiplier = 1.0 + 999.0 * x * x * x;
      items[i] = static_cast<std::uint32_t>(multiplier * parallel_bench::rounds_per_us);
    }
    return items;
  }

  std::uint64_t operator()(std::uint32_t rounds) const noexcept {
    return parallel_bench::spin(rounds, rounds);
  }
};

[[maybe_unused]] const bool registered = parallel_bench::register_map_variants<irregular>();

}  // namespace
