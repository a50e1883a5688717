// process_closure_pow: three pool programs (map, starmap, apply_async) on worker processes,
// including the one Python cannot run: a closure sent to a process pool.
//
// Mirrors a closure made by a factory function (power_factory), which Pool cannot pickle, and
// the two ways around it with a plain function, starmap and apply_async:
//
//   def power_factory(y):
//       def f(x):
//           time.sleep(1)
//           return pow(x, y)
//       return f
//
//   square = power_factory(2)
//   xs = range(10)
//   results = [square(x) for x in xs]     # not parallel:                 Elapsed: 10.007492
//   with Pool(5) as p:
//       results = p.map(square, xs)
//   # AttributeError: Can't pickle local object 'power_factory.<locals>.f'
//   # pathos: `from pathos.multiprocessing import ProcessPool`; `with ProcessPool(5) as p:`
//   print(results)                        # [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//   print(f"Elapsed: {(finished_at - started_at):f}")                    # Elapsed: 2.019734
//
//   def slow_pow(x, y):
//       time.sleep(1)
//       return pow(x, y)
//
//   with Pool(5) as p:                    # starmap                       Elapsed: 2.026638
//       results = p.starmap(slow_pow, zip(xs, [2]*len(xs)))
//
//   with Pool(5) as p:                    # apply_async                   Elapsed: 2.039259
//       for x in xs:
//           results.append(p.apply_async(slow_pow, (x, 2)))
//       results = [r.get() for r in results]
//
// The pool is parallel::process_pool<parallel::start::fork>: five worker processes, forked when
// the pool is built and kept until it is destroyed (the end of the `with` block). What crosses
// to them is the function itself, not a pickle of it: a function or a lambda is code in this
// executable, which the workers run too, so only its location and its captures are sent.
// power_factory(2) captures an int by value, whose bytes are its value, so it crosses as is
// (what pathos does with dill, without a different import). Capture by value for a pool: a
// lambda capturing a std::vector by value is a compile-time error naming the fix, and a
// reference means nothing in a worker that has its own memory. With
// parallel::processes<parallel::start::fork> the workers are forked at the call and read the
// caller's memory, so a lambda capturing by reference runs there (the last part below).
//
// Each `with Pool(5)` block is timed as in the Python, starting the pool included. The 1 s
// sleep is 100 ms here, so the sequential loop takes about 1.0 s and each pool about 0.2 s.
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <iostream>
#include <parallel/parallel.hpp>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "python_style.hpp"

using namespace std::chrono_literals;

constexpr auto one_second = 100ms;  // Python's time.sleep(1), scaled down
constexpr double ten_sleeps = 10 * std::chrono::duration<double>(one_second).count();

int int_pow(int x, int y) {
  int result = 1;
  for (int i = 0; i < y; ++i) result *= x;
  return result;
}

auto power_factory(int y) {
  return [y](int x) {
    std::this_thread::sleep_for(one_second);
    return int_pow(x, y);
  };
}

int slow_pow(int x, int y) {
  std::this_thread::sleep_for(one_second);
  return int_pow(x, y);
}

int main() {
  examples::checker checks;
  const std::vector<int> xs = examples::range(10);
  const std::vector<int> expected{0, 1, 4, 9, 16, 25, 36, 49, 64, 81};
  auto square = power_factory(2);

  std::cout << "Not parallel\n";
  {
    examples::stopwatch started_at;
    std::vector<int> results;
    for (int x : xs) results.push_back(square(x));
    std::cout << examples::py_list(results) << '\n';
    started_at.print_elapsed();
    checks.equal(results, expected, "[square(x) for x in xs]");
  }

  std::cout << "power_factory(2) on a process pool (pathos' ProcessPool)\n";
  {
    examples::stopwatch started_at;
    std::vector<int> results;
    {
      parallel::process_pool<parallel::start::fork> p{{.workers = 5}};
      results = p.map(square, xs);
    }
    std::cout << examples::py_list(results) << '\n';
    const double elapsed = started_at.print_elapsed();
    checks.equal(results, expected, "pool.map(power_factory(2), range(10))");
    // Five processes overlap the sleeps; ten sleeps in a row is what no overlap would take.
    checks.that(elapsed < ten_sleeps, "five processes overlap the sleeps of map");
  }

  std::cout << "starmap\n";
  {
    examples::stopwatch started_at;
    std::vector<std::tuple<int, int>> args;  // zip(xs, [2]*len(xs))
    for (int x : xs) args.emplace_back(x, 2);
    std::vector<int> results;
    {
      parallel::process_pool<parallel::start::fork> p{{.workers = 5}};
      results = p.starmap(slow_pow, args);
    }
    std::cout << examples::py_list(results) << '\n';
    const double elapsed = started_at.print_elapsed();
    checks.equal(results, expected, "pool.starmap(slow_pow, zip(xs, [2]*10))");
    checks.that(elapsed < ten_sleeps, "five processes overlap the sleeps of starmap");
  }

  std::cout << "apply_async\n";
  {
    examples::stopwatch started_at;
    std::vector<int> results;
    {
      parallel::process_pool<parallel::start::fork> p{{.workers = 5}};
      std::vector<parallel::future<int>> pending;
      for (int x : xs) pending.push_back(p.submit(slow_pow, x, 2));
      for (auto& r : pending) results.push_back(r.get());
    }
    std::cout << examples::py_list(results) << '\n';
    const double elapsed = started_at.print_elapsed();
    checks.equal(results, expected, "[r.get() for r in p.apply_async(slow_pow, (x, 2))]");
    checks.that(elapsed < ten_sleeps, "five processes overlap the sleeps of submit");
  }

  // The work above ran in other processes: ask the workers who they are.
  {
    const long parent = static_cast<long>(getpid());
    parallel::process_pool<parallel::start::fork> p{{.workers = 5}};
    auto whoami = [](int) {
      std::this_thread::sleep_for(10ms);
      return static_cast<long>(getpid());
    };
    const std::vector<long> pids = p.map(whoami, xs);
    const std::set<long> workers(pids.begin(), pids.end());
    std::cout << "items ran in " << workers.size() << " worker processes, none of them pid "
              << parent << '\n';
    checks.that(!workers.contains(parent), "the pool's tasks run outside the calling process");
    checks.that(workers.size() <= p.size(), "the pool's tasks run in at most its 5 workers");
  }

  // A closure holding a reference is for workers forked at the call: they read the caller's
  // memory as it is when the call starts (copy-on-write), the vector included.
  {
    const std::vector<int> exponents{0, 1, 2, 3};
    auto power_of_two = [&exponents](int i) { return 1 << exponents[static_cast<std::size_t>(i)]; };
    std::vector<int> powers =
        parallel::map(parallel::processes<parallel::start::fork>{.workers = 2}, power_of_two,
                      examples::range(static_cast<int>(exponents.size())));
    std::cout << examples::py_list(powers) << '\n';
    checks.equal(powers, {1, 2, 4, 8}, "a lambda capturing a vector by reference, on fork");
  }

  return checks.exit_code();
}
