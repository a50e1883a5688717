// Task identity across shared libraries: a function or lambda that lives in a shared
// library runs in workers of every start method, since a task names its code as (module path,
// offset); and code in a library the worker has not loaded (opened with dlopen after the workers
// started) is a parallel::spawn_error naming the library, never a crash.
#if !defined(_WIN32)

#include <dlfcn.h>

#include <numeric>
#include <parallel/parallel.hpp>
#include <string>
#include <vector>

#include "catch.hpp"
#include "shared_module/module.hpp"
#include "test_support.hpp"

using test_support::watchdog;

namespace {

std::vector<int> iota_vector(int n) {
  std::vector<int> xs(static_cast<std::size_t>(n));
  std::iota(xs.begin(), xs.end(), 0);
  return xs;
}

std::vector<int> times(const std::vector<int>& xs, int factor, int plus = 0) {
  std::vector<int> out;
  for (int x : xs) out.push_back(x * factor + plus);
  return out;
}

int square(int x) { return x * x; }

using plugin_function = int (*)(int);

/// Opens the plugin built next to the tests (PARALLEL_TEST_PLUGIN is its path) and returns its
/// function. It stays loaded for the rest of the test program.
plugin_function open_plugin() {
  void* handle = ::dlopen(PARALLEL_TEST_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  REQUIRE(handle != nullptr);
  auto* symbol = ::dlsym(handle, "parallel_test_plugin_negate");
  REQUIRE(symbol != nullptr);
  return reinterpret_cast<plugin_function>(symbol);
}

/// What call() raised: a parallel::spawn_error's message (another exception fails the test).
template <class Call>
std::string spawn_error_message(Call call) {
  try {
    call();
  } catch (const parallel::spawn_error& e) {
    return e.what();
  }
  FAIL("no parallel::spawn_error");
  return {};
}

bool names_the_plugin(const std::string& message) {
  return message.find("libparallel_test_plugin.so") != std::string::npos &&
         message.find("dlopen") != std::string::npos;
}

}  // namespace

TEST_CASE("a function of a linked shared library runs in workers of every start method",
          "[spawn][forkserver][processes]") {
  watchdog guard("shared library function", std::chrono::seconds(60));
  const std::vector<int> xs = iota_vector(200);
  const std::vector<int> tripled = times(xs, 3);
  CHECK(parallel::map(parallel::processes<parallel::start::fork>{.workers = 2}, test_module::triple,
                      xs) == tripled);
  CHECK(parallel::map(parallel::processes<parallel::start::spawn>{.workers = 2},
                      test_module::triple, xs) == tripled);
  CHECK(parallel::map(parallel::processes<parallel::start::forkserver>{.workers = 2},
                      test_module::triple, xs) == tripled);
  parallel::process_pool<parallel::start::fork> pool{{.workers = 2}};
  CHECK(pool.map(test_module::triple, xs) == tripled);
  CHECK(pool.submit(test_module::triple, 14).get() == 42);
}

TEST_CASE("lambdas compiled into a shared library run in spawned and forkserver workers",
          "[spawn][forkserver]") {
  watchdog guard("shared library lambdas", std::chrono::seconds(60));
  const std::vector<int> xs = iota_vector(200);
  CHECK(test_module::spawn_scaled(xs, 5) == times(xs, 5));
  parallel::process_pool<parallel::start::forkserver> pool{{.workers = 2}};
  CHECK(test_module::pool_scaled(pool, xs, 7) == times(xs, 7, 1));
}

TEST_CASE("code in a library opened after the workers started is a spawn_error naming it",
          "[spawn][forkserver][processes]") {
  watchdog guard("library opened late", std::chrono::seconds(60));
  const std::vector<int> xs = iota_vector(50);
  const std::vector<int> negated = times(xs, -1);

  parallel::process_pool<parallel::start::fork> forked_before{{.workers = 2}};
  parallel::process_pool<parallel::start::spawn> spawned{{.workers = 2}};
  const plugin_function negate = open_plugin();

  CHECK(names_the_plugin(spawn_error_message([&] { (void)forked_before.map(negate, xs); })));
  CHECK(
      names_the_plugin(spawn_error_message([&] { (void)forked_before.submit(negate, 3).get(); })));
  CHECK(names_the_plugin(spawn_error_message([&] { (void)spawned.map(negate, xs); })));
  CHECK(names_the_plugin(spawn_error_message([&] {
    (void)parallel::map(parallel::processes<parallel::start::forkserver>{.workers = 2}, negate, xs);
  })));
  // The pools are fine afterwards, and workers forked after the dlopen have the library.
  CHECK(forked_before.map(square, xs)[7] == 49);
  CHECK(spawned.map(square, xs)[7] == 49);
  CHECK(parallel::map(parallel::processes<parallel::start::fork>{.workers = 2}, negate, xs) ==
        negated);
}

#endif  // !_WIN32
