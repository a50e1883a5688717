// imap_progress: an ordered, lazy imap over a generator of parameter "dicts", with a tqdm bar.
//
// Mirrors Python's Pool.imap over parameter dicts, wrapped in tqdm:
//
//   def function_to_parallelize(params):
//       param1 = params['param1']
//       param2 = params['param2']
//       result = {}
//       result['sum'] = param1+param2
//       return result
//
//   NCPU = multiprocessing.cpu_count() - 2 if multiprocessing.cpu_count() > 2 else 1
//   X_values = [10,22,35,4,532,12,42,53,23]
//   params = ({'param1': x, 'param2': 15} for x in X_values)
//
//   with multiprocessing.Pool(processes=NCPU) as p:
//       MAX_COUNT = len(X_values)
//       for res in tqdm(p.imap(function_to_parallelize, params), total=MAX_COUNT):
//           if res is not None:
//               print(res['sum'])
//
// The dict is a std::map<std::string, int>, both ways. NCPU's "all cores but two, at least one"
// is exactly threads{.workers = -2}. There is no tqdm(total=...) to pass: the input knows its
// size, so the bar knows its total. The bar goes to stderr, the sums to stdout, like tqdm.
// The params here are a list; imap reads any input range as it goes, so a generator of dicts
// (a view that builds each dict when it is read) works too: imap_lazy.cpp shows one.
#include <cstddef>
#include <iostream>
#include <map>
#include <parallel/parallel.hpp>
#include <string>
#include <vector>

#include "python_style.hpp"

using dict = std::map<std::string, int>;

dict function_to_parallelize(const dict& params) {
  const int param1 = params.at("param1");
  const int param2 = params.at("param2");

  // Returning a dict leaves room for richer results later.
  dict result;
  result["sum"] = param1 + param2;
  return result;
}

int main() {
  examples::checker checks;

  const std::vector<int> x_values{10, 22, 35, 4, 532, 12, 42, 53, 23};
  std::vector<dict> params;
  for (int x : x_values) params.push_back(dict{{"param1", x}, {"param2", 15}});

  std::vector<int> sums;
  for (dict& res : parallel::imap(parallel::threads{.workers = -2}, function_to_parallelize, params,
                                  {.progress = parallel::progress_bar()})) {
    // `if res is not None`: a C++ result is always there; a throwing task would surface here.
    std::cout << res["sum"] << '\n';
    sums.push_back(res["sum"]);
  }

  // imap keeps input order, so the sums line up with X_values.
  std::vector<int> expected;
  for (int x : x_values) expected.push_back(x + 15);
  checks.equal(sums, expected, "imap yields param1 + param2 for every dict, in order");

  // The same loop with a progress callback of our own, to check what the bar is told:
  // (done, total) with done non-decreasing and the last call done == total == len(X_values).
  std::size_t calls = 0;
  std::size_t last_done = 0;
  std::size_t last_total = 0;
  bool monotonic = true;
  auto watch = [&](std::size_t done, std::size_t total) {
    monotonic = monotonic && done >= last_done;
    last_done = done;
    last_total = total;
    ++calls;
  };
  std::vector<int> sums_again;
  for (dict& res : parallel::imap(parallel::threads{.workers = -2}, function_to_parallelize, params,
                                  {.progress = watch}))
    sums_again.push_back(res.at("sum"));
  checks.equal(sums_again, expected, "imap with a progress callback yields the same sums");
  checks.that(calls > 0 && monotonic, "progress is called with a non-decreasing done count");
  checks.that(last_done == x_values.size() && last_total == x_values.size(),
              "the last progress call is (len(X_values), len(X_values))");

  return checks.exit_code();
}
