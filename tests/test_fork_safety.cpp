// Forking while threads run: a process map started while the thread pool (and other threads)
// are busy must not deadlock its children, which run nothing but the worker loop.
#include <atomic>
#include <mutex>
#include <numeric>
#include <parallel/parallel.hpp>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using test_support::watchdog;

TEST_CASE("process maps fork safely while the thread pool is busy", "[processes][fork_safety]") {
  watchdog guard("fork while threads run", std::chrono::seconds(60));
  std::atomic<bool> stop{false};
  std::atomic<bool> busy_thread_wrong{false};  // Catch's assertions are for the test's thread only
  std::mutex held_by_busy_thread;
  // Keeps the default thread pool (and a user mutex) busy from another thread all along.
  std::thread busy([&] {
    std::vector<int> xs(10000);
    std::iota(xs.begin(), xs.end(), 0);
    while (!stop.load()) {
      std::lock_guard lock(held_by_busy_thread);
      auto r = parallel::map([](int x) { return x * 2; }, xs);
      if (r[9999] != 19998) busy_thread_wrong = true;
    }
  });
  std::vector<int> xs(200);
  std::iota(xs.begin(), xs.end(), 0);
  for (int round = 0; round < 30; ++round) {
    auto squares = parallel::map(
        parallel::processes<parallel::start::fork>{.workers = 2}, [](int x) { return x * x; }, xs);
    REQUIRE(squares[199] == 199 * 199);
  }
  parallel::process_pool<parallel::start::fork> pool{{.workers = 2}};
  for (int round = 0; round < 30; ++round) {
    auto squares = pool.map([](int x) { return x * x; }, xs);
    REQUIRE(squares[17] == 289);
  }
  stop = true;
  busy.join();
  REQUIRE_FALSE(busy_thread_wrong.load());
}

TEST_CASE("a process worker may use the thread backend itself", "[processes][fork_safety]") {
  if (test_support::under_thread_sanitizer) {
    WARN(
        "skipped: under ThreadSanitizer a forked child of a threaded program cannot start threads");
    return;
  }
  watchdog guard("threads inside a forked worker", std::chrono::seconds(60));
  // The default pool exists in the caller before the fork; the worker gets a fresh one.
  std::vector<int> warm(1000, 1);
  (void)parallel::map([](int x) { return x; }, warm);
  std::vector<int> xs{1, 2, 3, 4};
  auto sums = parallel::map(
      parallel::processes<parallel::start::fork>{.workers = 2},
      [](int n) {
        std::vector<int> inner(1000, n);
        auto doubled = parallel::map([](int v) { return 2 * v; }, inner);
        return std::accumulate(doubled.begin(), doubled.end(), 0);
      },
      xs);
  REQUIRE(sums == std::vector<int>{2000, 4000, 6000, 8000});
}
