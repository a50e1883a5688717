// process_per_item: one child process per item, the pattern a pool replaces.
//
// Mirrors Python's one Process per argument, cube run with the arguments 1 to 999, all the
// processes started and then joined:
//
//   def cube(x):
//       return x**3
//   processes = [multiprocessing.Process(target=cube, args=(x,)) for x in range(1,1000)]
//   [p.start() for p in processes]
//   result = [p.join() for p in processes]
//
// This is the pattern to avoid, as a machine has only a handful of cores for 999 processes:
// each process costs a fork, and a Process returns nothing (`result` is a list of None),
// so the cubes are lost. The C++ twin does the same thing and shows both sides: it works (fork
// of a small program costs a fraction of a millisecond), every exit code is 0, and the results
// have to come back some other way; a pool (parallel::map, see thread_pool_swap.cpp) does that,
// with a handful of workers instead of 999 processes.
#include <iostream>
#include <parallel/parallel.hpp>
#include <vector>

#include "python_style.hpp"

int cube(int x) { return x * x * x; }

int main() {
  examples::checker checks;
  const std::vector<int> xs = examples::range(1, 1000);

  examples::stopwatch started_at;
  std::vector<parallel::process> processes;
  processes.reserve(xs.size());
  for (int x : xs) processes.emplace_back(cube, x);  // Process(target=cube, args=(x,)).start()
  for (parallel::process& p : processes) p.join();
  const double seconds = started_at.seconds();

  std::vector<int> exitcodes;
  for (parallel::process& p : processes) exitcodes.push_back(p.exit_code());
  std::cout << "Started and joined " << processes.size() << " processes in " << seconds
            << " seconds\n";
  std::cout << "exitcodes: " << examples::py_list(exitcodes, 6) << '\n';
  checks.equal(exitcodes, std::vector<int>(xs.size(), 0), "every process exits 0");

  // The pool way, which returns the cubes.
  const std::vector<int> result = parallel::map(cube, xs);
  std::cout << "parallel::map(cube, range(1, 1000)): " << examples::py_list(result, 6) << '\n';
  checks.that(result.size() == xs.size() && result.front() == 1 && result.back() == 997002999,
              "map returns every cube, in order");
  return checks.exit_code();
}
