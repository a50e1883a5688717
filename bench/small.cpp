// small: x*3+1 over 1000 ints, on warm runtimes. The whole job is ~0.3 us of work, less than
// waking a sleeping thread costs, so the only winning move is not to go parallel at all: this
// measures the fixed cost of a call and whether small inputs take the inline path.
//
// Target: parallel_map's median time <= 1 us.
#include <cstddef>
#include <numeric>
#include <vector>

#include "map_variants.hpp"

namespace {

struct small {
  static constexpr const char* name = "small";
  static constexpr std::ptrdiff_t omp_dynamic_chunk = 64;

  static std::vector<int> make_input() {
    std::vector<int> items(1000);
    std::iota(items.begin(), items.end(), 0);
    return items;
  }

  int operator()(int x) const noexcept { return x * 3 + 1; }
};

[[maybe_unused]] const bool registered = parallel_bench::register_map_variants<small>();

}  // namespace
