// imap_lazy: imap over a generator, so the inputs are made as they are needed, not up front.
//
// Mirrors the Python advice to pass a generator instead of a list, so that the parameters are
// not allocated all at once but while the loop iterates:
//
//   params = ({'param1': x, 'param2': 15} for x in X_values)
//   for res in tqdm(p.imap(function_to_parallelize, params), total=MAX_COUNT):
//       print(res['sum'])
//
// and the generator taken to its end, an input that never stops:
//
//   for v in p.imap(square, itertools.count()):
//       if v > 100:
//           break
//
// A C++20 view is the generator: `x_values | std::views::transform(make_params)` builds each
// dict when imap reads it. imap reads ahead of the loop by a bounded number of items
// (options.max_in_flight), so an endless std::views::iota(0) is fine, and leaving the loop
// stops the work. (Python's Pool.imap, by contrast, feeds its task queue from the iterable
// without a bound.)
//
// Needs a standard library whose <ranges> views the compiler can build: g++ 12 can; clang 14 with
// libstdc++ 12 cannot (llvm/llvm-project#52696), so CMake skips this example there.
#include <atomic>
#include <cstddef>
#include <iostream>
#include <map>
#include <parallel/parallel.hpp>
#include <ranges>
#include <string>
#include <vector>

#include "python_style.hpp"

using dict = std::map<std::string, int>;

dict function_to_parallelize(const dict& params) {
  dict result;
  result["sum"] = params.at("param1") + params.at("param2");
  return result;
}

int square(int x) { return x * x; }

int main() {
  examples::checker checks;

  // imap over a generator of 1000 parameter dicts, counting the dicts built so far.
  {
    const std::vector<int> x_values = examples::range(1000);
    std::atomic<std::size_t> built{0};
    auto params = x_values | std::views::transform([&built](int x) {
                    built.fetch_add(1, std::memory_order_relaxed);
                    return dict{{"param1", x}, {"param2", 15}};
                  });

    std::vector<int> sums;
    std::size_t built_at_first_result = 0;
    for (dict& res : parallel::imap(parallel::threads{.workers = -2}, function_to_parallelize,
                                    params, {.max_in_flight = 8})) {
      if (sums.empty()) built_at_first_result = built.load();
      sums.push_back(res["sum"]);
    }
    std::cout << "dicts built when the first result arrived: " << built_at_first_result << " of "
              << x_values.size() << '\n';

    std::vector<int> expected;
    for (int x : x_values) expected.push_back(x + 15);
    checks.equal(sums, expected, "imap over a generator yields every sum, in order");
    checks.that(built_at_first_result < x_values.size(),
                "the generator is read as the loop goes, not drained up front");
    checks.that(built.load() == x_values.size(), "each dict is built exactly once");
  }

  // An endless input: squares of 0, 1, 2, ... until one exceeds 100.
  {
    std::atomic<std::size_t> computed{0};
    auto counted_square = [&computed](int x) {
      computed.fetch_add(1, std::memory_order_relaxed);
      return square(x);
    };
    std::vector<int> seen;
    for (int v : parallel::imap(parallel::threads{}, counted_square, std::views::iota(0))) {
      seen.push_back(v);
      if (v > 100) break;
    }
    std::cout << examples::py_list(seen) << '\n';
    std::cout << "squares computed for an endless input: " << computed.load() << '\n';

    std::vector<int> expected;
    for (int x = 0; x <= 11; ++x) expected.push_back(square(x));
    checks.equal(seen, expected, "imap over iota(0) yields 0, 1, 4, ..., 121 in order");
    // Reaching this line at all means breaking out of the loop stopped the work.
  }

  return checks.exit_code();
}
