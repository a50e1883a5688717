// thread_pool_initializer: each worker thread prepares itself once, keeps its own state from task
// to task, and reports when the pool ends.
//
// The Python a user would write (concurrent.futures, with mpire's worker_state for the cache):
//
//   def init(greeting):                       # initializer=init, initargs=("hello",)
//       local.cache = {}; local.greeting = greeting
//   def describe(n):
//       if n not in local.cache:
//           local.cache[n] = f"{local.greeting} {n * n}"
//       return local.cache[n]
//   with ThreadPoolExecutor(2, initializer=init, initargs=("hello",)) as ex:
//       print(list(ex.map(describe, [3, 1, 3, 2, 1])))
//
// Here the initializer's arguments are what its lambda captures, the per-thread state is
// parallel::worker_state<T>(), and on_exit runs on each worker after its last task.
#include <atomic>
#include <iostream>
#include <map>
#include <parallel/parallel.hpp>
#include <string>
#include <vector>

#include "python_style.hpp"

namespace {

struct worker_cache {
  std::string greeting;
  std::map<int, std::string> known;
  int computed = 0;  // entries this worker had to compute
};

std::string describe(int n) {
  worker_cache& cache = parallel::worker_state<worker_cache>();
  auto [it, fresh] = cache.known.try_emplace(n);
  if (fresh) {
    it->second = cache.greeting + " " + std::to_string(n * n);
    ++cache.computed;
  }
  return it->second;
}

}  // namespace

int main() {
  examples::checker checks;
  std::atomic<int> prepared{0};
  std::atomic<int> computed{0};
  std::vector<std::string> described;
  {
    const std::string greeting = "hello";  // initargs=("hello",)
    parallel::thread_pool pool{
        {.workers = 2,
         .initializer =
             [greeting, &prepared] {
               parallel::worker_state<worker_cache>().greeting = greeting;
               ++prepared;
             },
         .on_exit = [&computed] { computed += parallel::worker_state<worker_cache>().computed; }}};
    described = pool.map(describe, std::vector<int>{3, 1, 3, 2, 1});
    std::cout << examples::py_list(described) << '\n';
  }  // the pool ends here: each worker runs on_exit
  std::cout << "workers prepared: " << prepared << ", entries computed: " << computed << '\n';
  checks.equal(described, {"hello 9", "hello 1", "hello 9", "hello 4", "hello 1"},
               "pool.map(describe, ...) with an initializer");
  checks.that(prepared == 2, "the initializer ran once on each of the 2 workers");
  checks.that(computed >= 3 && computed <= 5,
              "each worker computed each value at most once (3 distinct, 2 workers)");
  return checks.exit_code();
}
