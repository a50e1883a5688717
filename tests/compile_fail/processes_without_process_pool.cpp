// <parallel/map.hpp> is threads-only: it parses no process code. A map over processes<...> with
// only that header says which header to add, in one error.
// expected-error: add #include <parallel/process_pool.hpp>
#include <parallel/map.hpp>
#include <vector>

int main() {
  const std::vector<int> items{1, 2, 3};
  auto results = parallel::map(
      parallel::processes<parallel::start::fork>{}, [](int x) { return x; }, items);
  return static_cast<int>(results.size());
}
