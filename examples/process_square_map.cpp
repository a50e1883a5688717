// process_square_map: Pool.map on worker processes, the simplest parallel program.
//
// Mirrors Python's Pool.map, where a notebook's Pool cannot find `square` in the children (the
// fix: move it to worker.py):
//
//   from multiprocessing import Pool
//   from worker import square          # def square(x): return x**2
//   numbers = [1, 2, 3, 4, 5]
//   with Pool() as pool:
//       squares = pool.map(square, numbers)
//   print(squares)                      # [1, 4, 9, 16, 25]
//
// Pool(n_cores).map over an array, which needs `if __name__ == '__main__':` under spawn (or the
// `multiprocess` package), and where spawn copies `array` into every worker:
//
//   with Pool(n_cores) as pool:
//       res = pool.map(fn, array)       # [fn(array[0]), ..., fn(array[-1])]
//
// ProcessPoolExecutor.map:
//
//   with concurrent.futures.ProcessPoolExecutor(3) as executor:
//       result = list(executor.map(cube, range(1, 1000)))
//
// and a sleeping square, not parallel, then on Pool(5):
//
//   def square(x):
//       time.sleep(1)
//       return pow(x, 2)
//   results = [square(x) for x in xs]   # Not parallel: Elapsed: 10.007492
//   with Pool(5) as p:
//       results = p.map(square, xs)     # Parallel:     Elapsed: 2.180675
//
// None of the Python workarounds is needed: the workers run this same executable, so `square`
// is found wherever it is defined, and main needs no guard. parallel::processes<start::fork>
// forks the workers at the call; they read the caller's memory copy-on-write, so `array` is
// neither pickled nor copied, and only results come back. parallel::process_pool keeps its
// workers across calls, as ProcessPoolExecutor does. The 1 s sleep is 100 ms here.
#include <chrono>
#include <cstddef>
#include <iostream>
#include <parallel/parallel.hpp>
#include <thread>
#include <vector>

#include "python_style.hpp"

using namespace std::chrono_literals;

constexpr auto one_second = 100ms;  // Python's time.sleep(1), scaled down

int square(int x) { return x * x; }

long long cube(int x) { return static_cast<long long>(x) * x * x; }

int slow_square(int x) {
  std::this_thread::sleep_for(one_second);
  return x * x;
}

int main() {
  examples::checker checks;

  // Pool() is every core, processes<>{} (workers = 0).
  {
    const std::vector<int> numbers{1, 2, 3, 4, 5};
    std::vector<int> squares = parallel::map(parallel::processes<>{}, square, numbers);
    std::cout << examples::py_list(squares) << '\n';
    checks.equal(squares, {1, 4, 9, 16, 25}, "Pool().map(square, [1..5]) on processes");
  }

  // Pool(n_cores).map(fn, array) over a larger array, read in place by the workers.
  {
    const int n_cores = 2;
    const std::vector<int> array = examples::range(100000);
    std::vector<int> res = parallel::map(
        parallel::processes<parallel::start::fork>{.workers = n_cores}, [](int x) { return x % 7; },
        array);
    std::cout << "res = " << examples::py_list(res, 6) << '\n';
    bool all_right = res.size() == array.size();
    for (std::size_t i = 0; all_right && i < res.size(); ++i) all_right = res[i] == array[i] % 7;
    checks.that(all_right, "res[i] == fn(array[i]) for all 100000 items");
  }

  // ProcessPoolExecutor(3).map(cube, range(1, 1000)).
  {
    std::vector<long long> result;
    {
      parallel::process_pool<parallel::start::fork> executor{{.workers = 3}};
      result = executor.map(cube, examples::range(1, 1000));
    }
    std::cout << examples::py_list(result, 6) << '\n';
    bool all_right = result.size() == 999;
    for (std::size_t i = 0; all_right && i < result.size(); ++i)
      all_right = result[i] == cube(static_cast<int>(i) + 1);
    checks.that(all_right, "executor.map(cube, range(1, 1000))[k] == cube(k + 1)");
  }

  // The sleeping square, not parallel, then Pool(5) on processes.
  const std::vector<int> xs = examples::range(10);
  const std::vector<int> expected{0, 1, 4, 9, 16, 25, 36, 49, 64, 81};
  {
    std::cout << "Not parallel\n";
    examples::stopwatch started_at;
    std::vector<int> results;
    for (int x : xs) results.push_back(slow_square(x));
    std::cout << examples::py_list(results) << '\n';
    started_at.print_elapsed();
    checks.equal(results, expected, "[square(x) for x in range(10)]");
  }
  {
    std::cout << "Parallel\n";
    examples::stopwatch started_at;
    std::vector<int> results =
        parallel::map(parallel::processes<parallel::start::fork>{.workers = 5}, slow_square, xs);
    std::cout << examples::py_list(results) << '\n';
    const double elapsed = started_at.print_elapsed();
    checks.equal(results, expected, "Pool(5).map(square, range(10)) on processes");
    // Ten sleeps one after another take at least 10 x 100 ms; five processes overlap them.
    checks.that(elapsed < 10 * std::chrono::duration<double>(one_second).count(),
                "five processes overlap the sleeps (faster than 10 x 100 ms)");
  }

  return checks.exit_code();
}
