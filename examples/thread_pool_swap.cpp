// thread_pool_swap: parallel::thread_pool as the drop-in for multiprocessing.pool.ThreadPool.
//
// Mirrors Python's fix of using a ThreadPool instead of a Pool:
//
//   from multiprocessing.pool import ThreadPool
//   def square(x):
//       return x**2
//   numbers = [1, 2, 3, 4, 5]
//   with ThreadPool() as pool:
//       squares = pool.map(square, numbers)
//   print(squares)                                  # [1, 4, 9, 16, 25]
//
// and the concurrent.futures version, which swaps ProcessPoolExecutor for ThreadPoolExecutor
// without touching the rest of the code:
//
//   with concurrent.futures.ThreadPoolExecutor(3) as executor:
//       result = executor.map(cube, range(1,1000))
//   print(list(result))
//
// In Python the swap is only the import. Here `parallel::thread_pool` has the same verbs as the
// free functions (map, starmap, imap, imap_unordered, submit), so the code reads the same
// whether it names a pool or a policy. The pool's destructor is the `with` block's exit: it
// finishes pending tasks and joins its workers.
#include <cstddef>
#include <iostream>
#include <parallel/parallel.hpp>
#include <vector>

#include "python_style.hpp"

int square(int x) { return x * x; }
int cube(int x) { return x * x * x; }

int main() {
  examples::checker checks;

  // `with ThreadPool() as pool: squares = pool.map(square, numbers)`.
  const std::vector<int> numbers{1, 2, 3, 4, 5};
  {
    parallel::thread_pool pool;  // ThreadPool(): one worker per core
    std::vector<int> squares = pool.map(square, numbers);
    std::cout << examples::py_list(squares) << '\n';
    checks.equal(squares, {1, 4, 9, 16, 25}, "thread_pool.map(square, numbers)");
    checks.that(pool.size() >= 1, "a default thread_pool has at least one worker");
  }

  // The same thing without naming a pool: the threads policy uses a shared one.
  {
    std::vector<int> squares = parallel::map(parallel::threads{}, square, numbers);
    checks.equal(squares, {1, 4, 9, 16, 25}, "parallel::map(threads{}, square, numbers)");
  }

  // `with ThreadPoolExecutor(3) as executor: result = executor.map(cube, range(1,1000))`.
  {
    parallel::thread_pool executor{3};
    std::vector<int> result = executor.map(cube, examples::range(1, 1000));
    std::cout << examples::py_list(result, 6) << '\n';
    checks.that(executor.size() == 3, "thread_pool{3} has 3 workers");
    checks.that(result.size() == 999, "999 cubes for range(1, 1000)");
    bool in_order = true;
    for (std::size_t i = 0; in_order && i < result.size(); ++i)
      in_order = result[i] == cube(static_cast<int>(i) + 1);
    checks.that(in_order, "result[i] == cube(i + 1), in input order");
  }

  return checks.exit_code();
}
