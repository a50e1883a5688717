// spawn_closure_pow: a closure made by a factory function (power_factory) on spawned workers,
// the case pickle refuses.
//
// Mirrors this Python program, which fails:
//
//   def power_factory(y):
//       def f(x):
//           time.sleep(1)
//           return pow(x, y)
//       return f
//
//   square = power_factory(2)
//   with Pool(5) as p:
//       results = p.map(square, range(10))
//   # AttributeError: Can't pickle local object 'power_factory.<locals>.f'
//
// Under fork (as on Linux) Python fails only because Pool pickles what it sends; under
// spawn (Windows, and macOS's default) even a module-level function crosses by name only, so a
// local closure has no chance. Here a spawned worker is this executable started again: the
// lambda's code is in it at the same offset, and the closure's capture, an int, crosses by value.
// So the closure runs on spawned workers as it does on forked ones (process_closure_pow.cpp).
// Built before main's other work, the pool's workers are new processes that share nothing with
// this one but the executable, as on Windows.
#include <chrono>
#include <cstdio>
#include <parallel/parallel.hpp>
#include <thread>
#include <vector>

#include "python_style.hpp"

namespace {

constexpr auto one_second = std::chrono::milliseconds(100);  // Python's time.sleep(1), scaled down

int int_pow(int x, int y) {
  int result = 1;
  for (int i = 0; i < y; ++i) result *= x;
  return result;
}

/// def power_factory(y): def f(x): sleep; return pow(x, y); return f
auto power_factory(int y) {
  return [y](int x) {
    std::this_thread::sleep_for(one_second);
    return int_pow(x, y);
  };
}

}  // namespace

int main(int argc, char* argv[]) {
  parallel::spawn_main(argc, argv);  // the spawned workers stop here and run tasks

  const auto square = power_factory(2);
  const std::vector<int> xs = examples::range(10);

  const auto started_at = std::chrono::steady_clock::now();
  std::vector<int> results;
  {
    parallel::process_pool<parallel::start::spawn> p{{.workers = 5}};  // with Pool(5) as p:
    results = p.map(square, xs);  //     results = p.map(square, xs)
  }
  const auto finished_at = std::chrono::steady_clock::now();
  std::printf("%s\n", examples::py_list(results).c_str());
  std::printf("Elapsed: %f\n", std::chrono::duration<double>(finished_at - started_at).count());

  // The same with workers spawned for the call alone.
  const std::vector<int> again =
      parallel::map(parallel::processes<parallel::start::spawn>{.workers = 5}, square, xs);

  for (int x : xs) {
    const int want = x * x;
    if (results[static_cast<std::size_t>(x)] != want ||
        again[static_cast<std::size_t>(x)] != want) {
      std::fprintf(stderr, "spawn_closure_pow: wrong result for %d\n", x);
      return 1;
    }
  }
  return 0;
}
