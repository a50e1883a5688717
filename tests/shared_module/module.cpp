#include "module.hpp"

namespace test_module {

int triple(int x) { return 3 * x; }

std::vector<int> spawn_scaled(const std::vector<int>& xs, int factor) {
  return parallel::map(
      parallel::processes<parallel::start::spawn>{.workers = 2},
      [factor](int x) { return x * factor; }, xs);
}

std::vector<int> pool_scaled(parallel::process_pool<parallel::start::forkserver>& pool,
                             const std::vector<int>& xs, int factor) {
  return pool.map([factor](int x) { return x * factor + 1; }, xs);
}

}  // namespace test_module
