// square_map: a list comprehension, then the same map on a pool of workers.
//
// Mirrors a plain Python loop:
//
//   numbers = [1, 2, 3, 4, 5]
//   squares = []
//   for number in numbers:
//       squares.append(square(number))
//   print(squares)                                  # [1, 4, 9, 16, 25]
//
// a list comprehension timed against `Pool(5).map` (without the sleep; see slow_square.cpp for
// the version with it):
//
//   started_at = time.time()
//   xs = range(10)
//   results = [square(x) for x in xs]               # not parallel
//   with Pool(5) as p:                              # parallel
//       results = p.map(square, xs)
//   print(results)
//   print(f"Elapsed: {(finished_at - started_at):f}")
//
// and `with Pool(n_cores) as pool: res = pool.map(fn, array)`.
//
// In C++ the verb stays the same and the first argument says where it runs:
// parallel::sequential{} is the plain loop, parallel::threads{.workers = 5} is `Pool(5)`.
// Squaring an int is far cheaper than handing it to a thread, so expect the pooled map to be
// no faster here; slow_square.cpp shows where the pool pays off.
#include <algorithm>
#include <cstddef>
#include <iostream>
#include <parallel/parallel.hpp>
#include <thread>
#include <vector>

#include "python_style.hpp"

int square(int x) { return x * x; }

int main() {
  examples::checker checks;

  // The for-loop to speed up.
  const std::vector<int> numbers{1, 2, 3, 4, 5};
  std::vector<int> squares;
  for (int number : numbers) squares.push_back(square(number));
  std::cout << examples::py_list(squares) << '\n';
  checks.equal(squares, {1, 4, 9, 16, 25}, "for-loop squares of [1..5]");

  // range(10), not parallel.
  const std::vector<int> xs = examples::range(10);
  const std::vector<int> expected{0, 1, 4, 9, 16, 25, 36, 49, 64, 81};
  {
    std::cout << "Not parallel\n";
    examples::stopwatch started_at;
    std::vector<int> results = parallel::map(parallel::sequential{}, square, xs);
    std::cout << examples::py_list(results) << '\n';
    started_at.print_elapsed();
    checks.equal(results, expected, "sequential map over range(10)");
  }

  // `with Pool(5) as p: results = p.map(square, xs)`.
  {
    std::cout << "Parallel\n";
    examples::stopwatch started_at;
    std::vector<int> results = parallel::map(parallel::threads{.workers = 5}, square, xs);
    std::cout << examples::py_list(results) << '\n';
    started_at.print_elapsed();
    checks.equal(results, expected, "threads{.workers = 5} map over range(10)");
  }

  // `Pool(n_cores)` over a larger array; threads{} (workers = 0) means every core.
  {
    const int n_cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const std::vector<int> array = examples::range(1000);
    std::vector<int> res = parallel::map(parallel::threads{.workers = n_cores}, square, array);
    std::cout << "Pool(" << n_cores << ").map(fn, array): " << examples::py_list(res, 6) << '\n';
    bool all_right = res.size() == array.size();
    for (std::size_t i = 0; all_right && i < res.size(); ++i)
      all_right = res[i] == square(array[i]);
    checks.that(all_right, "res[i] == fn(array[i]) for every i, in order");
  }

  return checks.exit_code();
}
