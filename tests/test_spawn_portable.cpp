// start::spawn as every platform has it: the contract a program can rely on whether its workers
// are started with posix_spawn (Linux) or CreateProcessW (Windows, where this file runs under
// Wine in CI). Only standard C++ here, so that the same assertions run on both: the four verbs,
// submit, a pool's initializer, a task's exception (remote_error), a worker that exits or crashes
// (worker_died, with the exit code or the crash named), a timeout, and parallel::process.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <parallel/parallel.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using test_support::watchdog;
using spawned = parallel::processes<parallel::start::spawn>;
using spawn_pool = parallel::process_pool<parallel::start::spawn>;

namespace {

/// Drawn anew in every process (the test program and each spawned worker run this again).
const unsigned this_process = std::random_device{}() | 1u;

int square(int x) { return x * x; }

int initialized = 0;
void initialize() { initialized = 7; }

std::vector<int> iota_vector(int n) {
  std::vector<int> xs(static_cast<std::size_t>(n));
  std::iota(xs.begin(), xs.end(), 0);
  return xs;
}

std::vector<int> squares_of(const std::vector<int>& xs) {
  std::vector<int> out;
  for (int x : xs) out.push_back(x * x);
  return out;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("spawn: map, starmap, imap and imap_unordered give the plain loop's results",
          "[spawn_portable]") {
  watchdog guard("spawn verbs", std::chrono::seconds(60));
  const std::vector<int> xs = iota_vector(200);
  const std::vector<int> expected = squares_of(xs);
  REQUIRE(parallel::map(spawned{.workers = 2}, square, xs) == expected);
  int offset = 5;  // not const: a const int would not need capturing
  REQUIRE(parallel::map(
              spawned{.workers = 2}, [offset](int x) { return x + offset; }, xs)[10] == 15);
  const std::vector<std::tuple<int, std::string>> pairs{{1, "a"}, {2, "bc"}};
  REQUIRE(parallel::starmap(
              spawned{.workers = 2},
              [](int n, const std::string& s) { return std::to_string(n) + s; },
              pairs) == std::vector<std::string>{"1a", "2bc"});
  std::vector<int> seen;
  for (int v : parallel::imap(spawned{.workers = 2}, square, xs)) seen.push_back(v);
  REQUIRE(seen == expected);
  seen.clear();
  for (int v : parallel::imap_unordered(spawned{.workers = 2}, square, xs)) seen.push_back(v);
  std::sort(seen.begin(), seen.end());
  REQUIRE(seen == expected);
  // processes<> is fork on POSIX and spawn on Windows: either way the same results.
  REQUIRE(parallel::map(parallel::processes<>{.workers = 2}, square, xs) == expected);
}

TEST_CASE("spawn: a pool's tasks run in other processes, after its initializer",
          "[spawn_portable]") {
  watchdog guard("spawn pool", std::chrono::seconds(60));
  spawn_pool pool{{.workers = 2, .initializer = initialize}};
  REQUIRE(pool.size() == 2);
  REQUIRE(initialized == 0);  // it ran in the workers, not here
  REQUIRE(pool.submit([](int) { return initialized; }, 0).get() == 7);
  const unsigned where = pool.submit([](int) { return this_process; }, 0).get();
  REQUIRE(where != this_process);
  REQUIRE(pool.submit([](int a, std::string b) { return b + std::to_string(a); }, 4, "x").get() ==
          "x4");
  const std::vector<int> xs = iota_vector(1000);
  REQUIRE(pool.map(square, xs, {.chunksize = 1}) == squares_of(xs));
  std::vector<parallel::future<int>> futures;
  for (int i = 0; i < 100; ++i) futures.push_back(pool.submit(square, i));
  for (int i = 0; i < 100; ++i) REQUIRE(futures[static_cast<std::size_t>(i)].get() == i * i);
}

TEST_CASE("spawn: a task's exception arrives as remote_error with its type and item",
          "[spawn_portable]") {
  watchdog guard("spawn remote_error", std::chrono::seconds(60));
  spawn_pool pool{{.workers = 2}};
  const std::vector<int> xs = iota_vector(10);
  try {
    (void)pool.map(
        [](int x) {
          if (x == 3) throw std::out_of_range("three");
          return x;
        },
        xs);
    FAIL("no exception");
  } catch (const parallel::remote_error& e) {
    CHECK(e.type_name() == "std::out_of_range");
    CHECK(e.index() == 3);
    CHECK(contains(e.what(), "three"));
  }
  auto fut = pool.submit([](int) -> int { throw std::invalid_argument("bad"); }, 0);
  REQUIRE_THROWS_AS(fut.get(), parallel::remote_error);
  REQUIRE(pool.map(square, xs) == squares_of(xs));  // the pool goes on
}

TEST_CASE("spawn: a worker that exits or crashes is worker_died, and the pool goes on",
          "[spawn_portable]") {
  watchdog guard("spawn worker_died", std::chrono::seconds(60));
  spawn_pool pool{{.workers = 2}};
  const std::vector<int> xs = iota_vector(10);
  try {
    (void)pool.map(
        [](int x) {
          if (x == 5) std::exit(3);
          return x;
        },
        xs);
    FAIL("no exception");
  } catch (const parallel::worker_died& e) {
    CHECK(contains(e.what(), "exited with code 3"));
    CHECK(contains(e.what(), "item 5"));
  }
  try {
    (void)pool.map(
        [](int x) {
          if (x == 2) *static_cast<volatile int*>(nullptr) = x;  // NOLINT: the crash is the test
          return x;
        },
        xs);
    FAIL("no exception");
  } catch (const parallel::worker_died& e) {
#if defined(_WIN32)
    CHECK(contains(e.what(), "access violation (exception 0xC0000005)"));
#else
    // A sanitizer catches the fault itself and exits with its own code.
    CHECK((contains(e.what(), "SIGSEGV") || test_support::under_sanitizer));
#endif
  }
  // Only the future whose worker died fails.
  auto dies = pool.submit(
      [](int code) {
        std::exit(code);
        return 0;
      },
      4);
  auto lives = pool.submit(square, 9);
  REQUIRE_THROWS_AS(dies.get(), parallel::worker_died);
  REQUIRE(lives.get() == 81);
  REQUIRE(pool.map(square, xs) == squares_of(xs));
}

TEST_CASE("spawn: a task over its timeout is timeout_error, its worker replaced",
          "[spawn_portable]") {
  watchdog guard("spawn timeout", std::chrono::seconds(60));
  spawn_pool pool{{.workers = 2}};
  const std::vector<int> xs = iota_vector(6);
  // The same call with nothing to time out (and the workers to wait for), in this run.
  const double healthy_ms = test_support::time_ms([&] {
    REQUIRE(pool.map(square, xs, {.timeout = std::chrono::milliseconds(300)}) == squares_of(xs));
  });
  const auto start = std::chrono::steady_clock::now();
  REQUIRE_THROWS_AS(pool.map(
                        [](int x) {
                          if (x == 4) std::this_thread::sleep_for(std::chrono::seconds(30));
                          return x;
                        },
                        xs, {.timeout = std::chrono::milliseconds(300)}),
                    parallel::timeout_error);
  // The item would sleep 30 s: the bound tells a timeout that fired from one that did not.
  test_support::check_at_once("timeout_error", test_support::ms_since(start), healthy_ms, 300);
  REQUIRE(pool.map(square, xs) == squares_of(xs));
}

namespace {
void exit_with(int code) { std::exit(code); }
void throw_runtime_error(int) { throw std::runtime_error("from the child"); }
void nap(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
}  // namespace

TEST_CASE("spawn: parallel::process runs f(args...) in a child and reports its exit code",
          "[spawn_portable]") {
  watchdog guard("process", std::chrono::seconds(60));
  parallel::process ok{[](int a, int b) { (void)(a + b); }, 1, 2};
  ok.join();
  CHECK(ok.exit_code() == 0);
  parallel::process four{exit_with, 4};
  four.join();
  CHECK(four.exit_code() == 4);
  parallel::process throws{throw_runtime_error, 0};
  throws.join();
  CHECK(throws.exit_code() == 1);
  parallel::process sleeper{nap, 20000};
  CHECK(sleeper.is_alive());
  CHECK_FALSE(sleeper.join_for(std::chrono::milliseconds(50)));
  sleeper.terminate();
  sleeper.join();
  CHECK(sleeper.exit_code() == -15);  // as Python: -SIGTERM
}
