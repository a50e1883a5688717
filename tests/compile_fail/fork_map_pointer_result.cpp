// Results come back from a forked worker through the codec: a raw pointer result (an address in
// the worker's memory) is refused at compile time, naming the type.
// expected-error: <int ?\*>.*a pointer or reference cannot cross a process boundary
#include <parallel/parallel.hpp>
#include <vector>

int main() {
  static int slots[3] = {1, 2, 3};
  const std::vector<int> items{0, 1, 2};
  auto results = parallel::map(
      parallel::processes<parallel::start::fork>{.workers = 1}, [](int i) { return &slots[i]; },
      items);
  return static_cast<int>(results.size());
}
