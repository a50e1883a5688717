// slow_square: where a pool pays off. Each call waits, so workers overlap the waiting.
//
// Mirrors this Python comparison of a loop and a pool:
//
//   def square(x):
//       time.sleep(1)
//       return pow(x, 2)
//
//   started_at = time.time()                          # Not parallel
//   xs = range(10)
//   results = [square(x) for x in xs]
//   print(results)                                    # [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//   print(f"Elapsed: {(finished_at - started_at):f}")  # Elapsed: 10.007492
//
//   with Pool(5) as p:                                # Parallel
//       results = p.map(square, xs)
//   ...                                               # Elapsed: 2.180675
//
// The 1 s sleep is 100 ms here, so the loop takes about 1.0 s and five workers a fraction of it. A
// sleep stands for I/O or any call that waits; it needs no free core, which is why five workers
// help even on two cores.
#include <chrono>
#include <iostream>
#include <parallel/parallel.hpp>
#include <thread>
#include <vector>

#include "python_style.hpp"

using namespace std::chrono_literals;

constexpr auto one_second = 100ms;  // Python's time.sleep(1), scaled down

int square(int x) {
  std::this_thread::sleep_for(one_second);
  return x * x;
}

int main() {
  examples::checker checks;
  const std::vector<int> xs = examples::range(10);
  const std::vector<int> expected{0, 1, 4, 9, 16, 25, 36, 49, 64, 81};

  std::cout << "Not parallel\n";
  double sequential_elapsed = 0;
  {
    examples::stopwatch started_at;
    std::vector<int> results;
    for (int x : xs) results.push_back(square(x));
    std::cout << examples::py_list(results) << '\n';
    sequential_elapsed = started_at.print_elapsed();
    checks.equal(results, expected, "list comprehension over range(10)");
  }

  std::cout << "Parallel\n";
  {
    examples::stopwatch started_at;
    std::vector<int> results = parallel::map(parallel::threads{.workers = 5}, square, xs);
    std::cout << examples::py_list(results) << '\n';
    const double parallel_elapsed = started_at.print_elapsed();
    checks.equal(results, expected, "threads{.workers = 5} map over range(10)");
    // Not a benchmark: only a map that overlapped nothing would take as long as the loop did
    // (at least 10 x 100 ms); five workers take about 0.2 s.
    checks.that(parallel_elapsed < sequential_elapsed,
                "five workers overlap the sleeps (faster than the sequential loop)");
  }

  return checks.exit_code();
}
