// starmap_pow: a function of several arguments, mapped over tuples of arguments.
//
// Mirrors Python's Pool.starmap:
//
//   def slow_pow(x, y):
//       time.sleep(1)
//       return pow(x, y)
//
//   xs = range(10)
//   with Pool(5) as p:
//       results = p.starmap(slow_pow, zip(xs, [2]*len(xs)))
//   print(results)                                    # [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//   print(f"Elapsed: {(finished_at - started_at):f}")  # Elapsed: 2.026638
//
// parallel::starmap calls std::apply(slow_pow, t) for each tuple t, and keeps input order.
// C++20 has no views::zip, so the pairs are built as a vector of tuples; any input range of
// tuples works the same. The 1 s sleep is 100 ms here.
#include <chrono>
#include <iostream>
#include <parallel/parallel.hpp>
#include <thread>
#include <tuple>
#include <vector>

#include "python_style.hpp"

using namespace std::chrono_literals;

constexpr auto one_second = 100ms;  // Python's time.sleep(1), scaled down

int slow_pow(int x, int y) {
  std::this_thread::sleep_for(one_second);
  int result = 1;
  for (int i = 0; i < y; ++i) result *= x;
  return result;
}

int main() {
  examples::checker checks;
  const std::vector<int> expected{0, 1, 4, 9, 16, 25, 36, 49, 64, 81};

  // zip(xs, [2]*len(xs))
  std::vector<std::tuple<int, int>> args;
  for (int x : examples::range(10)) args.emplace_back(x, 2);

  {
    examples::stopwatch started_at;
    std::vector<int> results = parallel::starmap(parallel::threads{.workers = 5}, slow_pow, args);
    std::cout << examples::py_list(results) << '\n';
    started_at.print_elapsed();
    checks.equal(results, expected, "starmap(slow_pow, zip(xs, [2]*10))");
  }

  return checks.exit_code();
}
