// A consumer that compiles with more warnings than the library's own builds ask for
// (-Wshadow -Wconversion -Wsign-conversion -Wold-style-cast, and -Werror): the headers it
// instantiates, the verbs on every backend, must not warn in it. Returns non-zero when a result
// is wrong.
#include <cstdio>
#include <parallel/parallel.hpp>
#include <string>
#include <tuple>
#include <vector>

namespace {

int square(int x) { return x * x; }
long add(int a, long b) { return a + b; }
std::string label(int x) { return "item " + std::to_string(x); }
void prepare(const std::string& name, int level) {
  parallel::worker_state<std::string>() = name + std::to_string(level);
}
std::string prepared(int) { return parallel::worker_state<std::string>(); }

int failures = 0;

template <class T>
void expect(const T& got, const T& want, const char* what) {
  if (got == want) return;
  ++failures;
  std::fprintf(stderr, "strict consumer: %s is wrong\n", what);
}

template <class Policy>
void every_verb(const Policy& policy, const char* name) {
  const std::vector<int> xs{1, 2, 3, 4, 5};
  const std::vector<int> squares{1, 4, 9, 16, 25};
  expect(parallel::map(policy, square, xs), squares, name);
  const std::vector<std::tuple<int, long>> pairs{{1, 2L}, {3, 4L}};
  expect(parallel::starmap(policy, add, pairs), std::vector<long>{3L, 7L}, name);
  std::vector<int> ordered;
  for (int r : parallel::imap(policy, square, xs, {.chunksize = 2})) ordered.push_back(r);
  expect(ordered, squares, name);
  int sum = 0;
  for (int r : parallel::imap_unordered(policy, square, xs)) sum += r;
  expect(sum, 55, name);
  expect(parallel::map(policy, label, std::vector<int>{7}), std::vector<std::string>{"item 7"},
         name);
}

}  // namespace

int main(int argc, char** argv) {
  parallel::spawn_main(argc, argv);
  every_verb(parallel::sequential{}, "sequential");
  every_verb(parallel::threads{.workers = 2}, "threads");
  every_verb(parallel::processes<>{.workers = 2}, "processes<>");

  parallel::thread_pool threads{2};
  expect(threads.map(square, std::vector<int>{2, 3}), std::vector<int>{4, 9}, "thread_pool.map");
  expect(threads.submit(add, 1, 2L).then([](long r) { return r * 2; }).get(), 6L,
         "thread_pool.submit.then");
  auto [left, right] = parallel::join([] { return square(3); }, [] { return square(4); });
  expect(left + right, 25, "join");

  parallel::process_pool<> processes{{.workers = 2, .initializer = {prepare, "strict", 2}}};
  expect(processes.map(prepared, std::vector<int>{1}), std::vector<std::string>{"strict2"},
         "process_pool's initializer");
  expect(processes.map(square, std::vector<int>{2, 3}), std::vector<int>{4, 9}, "process_pool.map");
  auto submitted = processes.submit(add, 4, 5L);
  expect(submitted.get(), 9L, "process_pool.submit");
  std::vector<parallel::future<int>> futures;
  futures.push_back(processes.submit(square, 6));
  for (parallel::future<int>& f : parallel::as_completed(futures))
    expect(f.get(), 36, "as_completed");

  parallel::process_pool<parallel::start::spawn> spawned{{.workers = 1, .on_exit = [] {}}};
  expect(spawned.submit(square, 7).get(), 49, "process_pool<start::spawn>.submit");
  expect(parallel::map(parallel::processes<parallel::start::forkserver>{.workers = 1}, square,
                       std::vector<int>{8}),
         std::vector<int>{64}, "processes<start::forkserver>");

  expect(std::string(parallel::version),
         std::to_string(PARALLEL_VERSION_MAJOR) + "." + std::to_string(PARALLEL_VERSION_MINOR) +
             "." + std::to_string(PARALLEL_VERSION_PATCH),
         "parallel::version");

  if (failures == 0) std::puts("strict consumer: every verb is right");
  return failures == 0 ? 0 : 1;
}
