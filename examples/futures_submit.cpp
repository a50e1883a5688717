// futures_submit: submit tasks one by one, keep their futures, collect the results.
//
// Mirrors Python's Pool.apply_async and AsyncResult.get():
//
//   pool = multiprocessing.Pool(3)
//   processes = [pool.apply_async(cube, args=(x,)) for x in range(1,1000)]
//   result = [p.get() for p in processes]
//   print(result)
//
// and apply_async of a function of two arguments, timed:
//
//   def slow_pow(x, y):
//       time.sleep(1)
//       return pow(x, y)
//   xs = range(10)
//   results = []
//   with Pool(5) as p:
//       for x in xs:
//           results.append(p.apply_async(slow_pow, (x, 2)))
//       results = [r.get() for r in results]
//   print(results)                                  # [0, 1, 4, ..., 81]
//   print(f"Elapsed: {(finished_at - started_at):f}")  # Elapsed: 2.039259
//
// `pool.submit(f, args...)` is apply_async and concurrent.futures' `executor.submit`; the
// parallel::future it returns is the AsyncResult: get() waits, returns the value, and rethrows
// the task's exception with its own type, like `future.result()`. The 1 s sleep is 100 ms here.
#include <chrono>
#include <cstddef>
#include <iostream>
#include <parallel/parallel.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "python_style.hpp"

using namespace std::chrono_literals;

constexpr auto one_second = 100ms;  // Python's time.sleep(1), scaled down

int cube(int x) { return x * x * x; }

int slow_pow(int x, int y) {
  std::this_thread::sleep_for(one_second);
  int result = 1;
  for (int i = 0; i < y; ++i) result *= x;
  return result;
}

int checked_sqrt_floor(int x) {
  if (x < 0) throw std::domain_error("checked_sqrt_floor: negative input");
  int r = 0;
  while ((r + 1) * (r + 1) <= x) ++r;
  return r;
}

int main() {
  examples::checker checks;

  // apply_async(cube) for 1..999 on Pool(3), then get() each in submission order.
  {
    parallel::thread_pool pool{3};
    std::vector<parallel::future<int>> processes;
    for (int x = 1; x < 1000; ++x) processes.push_back(pool.submit(cube, x));
    std::vector<int> result;
    for (auto& p : processes) result.push_back(p.get());
    std::cout << examples::py_list(result, 6) << '\n';

    bool all_right = result.size() == 999;
    for (std::size_t i = 0; all_right && i < result.size(); ++i)
      all_right = result[i] == cube(static_cast<int>(i) + 1);
    checks.that(all_right, "get() of the k-th future is cube(k + 1)");
    checks.that(!processes.front().valid(), "get() leaves the future invalid");
  }

  // apply_async(slow_pow, (x, 2)) on Pool(5), timed.
  {
    examples::stopwatch started_at;
    std::vector<int> results;
    {
      parallel::thread_pool p{5};
      std::vector<parallel::future<int>> pending;
      for (int x = 0; x < 10; ++x) pending.push_back(p.submit(slow_pow, x, 2));
      for (auto& r : pending) results.push_back(r.get());
    }
    std::cout << examples::py_list(results) << '\n';
    const double elapsed = started_at.print_elapsed();
    checks.equal(results, {0, 1, 4, 9, 16, 25, 36, 49, 64, 81}, "slow_pow(x, 2) for x in 0..9");
    // Ten sleeps one after another take at least 10 x 100 ms; five workers should overlap them
    // (about 0.2 s). Reaching the sequential minimum means the pool ran nothing concurrently.
    checks.that(elapsed < 10 * std::chrono::duration<double>(one_second).count(),
                "five workers overlap the sleeps (faster than 10 x 100 ms)");
  }

  // Like future.result(), get() rethrows what the task threw, with its own type.
  {
    parallel::thread_pool pool{2};
    auto ok = pool.submit(checked_sqrt_floor, 17);
    auto bad = pool.submit(checked_sqrt_floor, -1);
    checks.equal(ok.get(), 4, "checked_sqrt_floor(17) == 4");
    bool caught = false;
    try {
      bad.get();
    } catch (const std::domain_error& e) {
      caught = true;
      std::cout << "task raised: " << e.what() << '\n';
    }
    checks.that(caught, "get() rethrows the task's std::domain_error");
  }

  return checks.exit_code();
}
