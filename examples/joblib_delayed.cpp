// joblib_delayed: joblib's Parallel(n_jobs)(delayed(f)(x) for x in xs), on threads.
//
// Mirrors joblib's embarrassingly parallel for loop:
//
//   from joblib import Parallel, delayed
//   numbers = [1, 2, 3, 4, 5]
//   squares = Parallel(n_jobs=-1, verbose=1)(delayed(square)(number) for number in numbers)
//   print(squares)
//   # [Parallel(n_jobs=-1)]: Using backend LokyBackend with 8 concurrent workers.
//   # [1, 4, 9, 16, 25]
//   # [Parallel(n_jobs=-1)]: Done 5 out of 5 | elapsed: 0.4s finished
//
// and the same with n_jobs=3: with delayed, with the (function, args, kwargs) tuples written
// directly, and on threads (prefer="threads"):
//
//   result = Parallel(n_jobs=3)(delayed(cube)(i) for i in range(1,1000))
//   result = Parallel(n_jobs=3)((cube, (i,), {}) for i in range(1,1000))
//   result = Parallel(n_jobs=3, prefer="threads")(delayed(cube)(i) for i in range(1,1000))
//
// `delayed(f)(args...)` below is joblib's: it records a call without making it. A map that
// makes each recorded call is then `Parallel(...)(...)`. Mind the worker counts: joblib's
// n_jobs=-1 is "every core", which is threads{.workers = 0} (or thread_pool{}); parallel's
// workers = -1 is "all but one", joblib's n_jobs=-2. verbose=1 becomes a progress callback.
#include <cstddef>
#include <iomanip>
#include <iostream>
#include <parallel/parallel.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "python_style.hpp"

int square(int x) { return x * x; }
int cube(int x) { return x * x * x; }

/// joblib.delayed: `delayed(f)(args...)` is a callable that makes the call `f(args...)` later.
template <class F>
auto delayed(F f) {
  return [f](auto... args) { return [f, args...] { return f(args...); }; };
}

/// Parallel(...)'s runner: makes one recorded call.
constexpr auto make_call = [](const auto& call) { return call(); };

/// verbose=1: joblib's "Done 5 out of 5 | elapsed: 0.4s finished" line, from a progress callback.
parallel::progress verbose(std::string label) {
  return [label, started_at = examples::stopwatch{}](std::size_t done, std::size_t total) {
    if (done != total) return;
    std::ostringstream line;
    line << '[' << label << "]: Done " << done << " out of " << total
         << " | elapsed: " << std::fixed << std::setprecision(1) << started_at.seconds()
         << "s finished\n";
    std::cout << line.str();
  };
}

bool all_cubes(const std::vector<int>& result) {
  bool ok = result.size() == 999;
  for (std::size_t i = 0; ok && i < result.size(); ++i)
    ok = result[i] == cube(static_cast<int>(i) + 1);
  return ok;
}

int main() {
  examples::checker checks;

  // Parallel(n_jobs=-1, verbose=1)(delayed(square)(number) for number in numbers).
  {
    const std::vector<int> numbers{1, 2, 3, 4, 5};
    std::vector<decltype(delayed(square)(0))> jobs;  // the generator expression, as a list
    for (int number : numbers) jobs.push_back(delayed(square)(number));

    parallel::thread_pool backend;  // n_jobs=-1: every core
    std::cout << "[Parallel(n_jobs=-1)]: Using backend ThreadingBackend with " << backend.size()
              << " concurrent workers.\n";
    std::vector<int> squares =
        backend.map(make_call, jobs, {.progress = verbose("Parallel(n_jobs=-1)")});
    std::cout << examples::py_list(squares) << '\n';
    checks.equal(squares, {1, 4, 9, 16, 25}, "delayed(square)(number) for number in numbers");
  }

  // Parallel(n_jobs=3, prefer="threads")(delayed(cube)(i) for i in range(1,1000)).
  // With this library every pool is a thread pool, so with and without prefer= read the same.
  {
    std::vector<decltype(delayed(cube)(0))> jobs;
    for (int i : examples::range(1, 1000)) jobs.push_back(delayed(cube)(i));
    std::vector<int> result = parallel::map(parallel::threads{.workers = 3}, make_call, jobs);
    std::cout << examples::py_list(result, 6) << '\n';
    checks.that(all_cubes(result), "delayed(cube)(i) for i in range(1, 1000)");
  }

  // The tuples written directly: (cube, (i,), {}) is a function and its arguments.
  {
    std::vector<std::tuple<int (*)(int), std::tuple<int>>> calls;
    for (int i = 1; i < 1000; ++i) calls.emplace_back(cube, std::tuple{i});
    auto call_with = [](auto f, const auto& args) { return std::apply(f, args); };
    std::vector<int> result = parallel::starmap(parallel::threads{.workers = 3}, call_with, calls);
    checks.that(all_cubes(result), "(cube, (i,), {}) for i in range(1, 1000)");
  }

  return checks.exit_code();
}
