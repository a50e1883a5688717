// closure_map: mapping a function made at run time. Threads share memory, so nothing is pickled.
//
// Mirrors a Python program that maps a closure made by a factory function (power_factory) and
// fails with
// `AttributeError: Can't pickle local object 'power_factory.<locals>.f'`:
//
//   def power_factory(y):
//       def f(x):
//           time.sleep(1)
//           return pow(x, y)
//       return f
//
//   square = power_factory(2)
//   xs = range(10)
//   with Pool(5) as p:               # pathos: `with ProcessPool(5) as p:` makes it work
//       results = p.map(square, xs)
//   print(results)                   # [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//   print(f"Elapsed: {(finished_at - started_at):f}")   # Elapsed: 2.019734
//
// A C++ closure is an object holding its captures; worker threads call the very same object,
// so `power_factory(2)` goes to the pool as is (the pathos fix, without a different import).
// Across processes this is another matter; that comes with the process backend.
// The 1 s sleep is 100 ms here.
#include <chrono>
#include <cstddef>
#include <iostream>
#include <parallel/parallel.hpp>
#include <thread>
#include <vector>

#include "python_style.hpp"

using namespace std::chrono_literals;

constexpr auto one_second = 100ms;  // Python's time.sleep(1), scaled down

auto power_factory(int y) {
  return [y](int x) {
    std::this_thread::sleep_for(one_second);
    int result = 1;
    for (int i = 0; i < y; ++i) result *= x;
    return result;
  };
}

int main() {
  examples::checker checks;
  const std::vector<int> xs = examples::range(10);

  {
    examples::stopwatch started_at;
    auto square = power_factory(2);
    std::vector<int> results = parallel::map(parallel::threads{.workers = 5}, square, xs);
    std::cout << examples::py_list(results) << '\n';
    started_at.print_elapsed();
    checks.equal(results, {0, 1, 4, 9, 16, 25, 36, 49, 64, 81}, "power_factory(2) over range(10)");
  }

  // Any capture works the same way, including a reference to the caller's data.
  {
    const std::vector<int> exponents{0, 1, 2, 3};
    auto power_of_two = [&exponents](int i) { return 1 << exponents[static_cast<std::size_t>(i)]; };
    std::vector<int> powers = parallel::map(parallel::threads{.workers = 2}, power_of_two,
                                            examples::range(static_cast<int>(exponents.size())));
    std::cout << examples::py_list(powers) << '\n';
    checks.equal(powers, {1, 2, 4, 8}, "a lambda capturing a vector by reference");
  }

  return checks.exit_code();
}
