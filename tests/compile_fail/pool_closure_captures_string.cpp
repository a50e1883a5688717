// A process_pool ships f's captures as bytes: a lambda capturing a std::string by value cannot go
// to a worker process, and the error says so and how to pass the string instead.
// expected-error: cannot be sent to a worker process
#include <parallel/parallel.hpp>
#include <string>
#include <vector>

int main() {
  parallel::process_pool<parallel::start::fork> pool{{.workers = 1}};
  const std::string suffix = "!";
  const std::vector<int> items{1, 2, 3};
  auto results = pool.map([suffix](int x) { return std::to_string(x) + suffix; }, items);
  return static_cast<int>(results.size());
}
