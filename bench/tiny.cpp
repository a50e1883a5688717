// tiny: x*3+1 over 1e7 ints into a std::vector<int>. An item costs less than a cache miss, so
// this measures what a parallel map adds to a loop the compiler vectorises, and whether it keeps
// up with memory bandwidth and the first touch of the 40 MB result (every variant allocates its
// output inside the timed loop, as parallel::map, which returns a new vector, must).
//
// Target: parallel_map within 1.05x of sequential, and no slower than tbb or omp_static.
#include <cstddef>
#include <numeric>
#include <vector>

#include "map_variants.hpp"

namespace {

struct tiny {
  static constexpr const char* name = "tiny";
  // ~30 us of work per chunk; the default chunk of 1 would be an atomic increment per element.
  static constexpr std::ptrdiff_t omp_dynamic_chunk = 65536;

  static std::vector<int> make_input() {
    std::vector<int> items(10'000'000);
    std::iota(items.begin(), items.end(), 0);
    return items;
  }

  int operator()(int x) const noexcept { return x * 3 + 1; }
};

[[maybe_unused]] const bool registered = parallel_bench::register_map_variants<tiny>();

}  // namespace
