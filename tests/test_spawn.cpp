// start::spawn and start::forkserver: workers that run this executable again (tests/main.cpp
// begins with parallel::spawn_main) or that a single-threaded server forks. Items, f's captures
// and results cross through the codec, as on a fork pool.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <parallel/parallel.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

using test_support::watchdog;

namespace {

int square(int x) { return x * x; }

int initialized = 0;
void initialize() { initialized = 7; }

std::vector<int> iota_vector(int n) {
  std::vector<int> xs(static_cast<std::size_t>(n));
  std::iota(xs.begin(), xs.end(), 0);
  return xs;
}

template <class Start>
void check_verbs() {
  const std::vector<int> xs = iota_vector(300);
  std::vector<int> expected;
  for (int x : xs) expected.push_back(x * x);
  REQUIRE(parallel::map(parallel::processes<Start>{.workers = 2}, square, xs) == expected);
  int offset = 5;  // not const: a const int would not need capturing
  REQUIRE(parallel::map(
              parallel::processes<Start>{.workers = 2}, [offset](int x) { return x + offset; },
              xs)[10] == 15);
  const auto add_offset = [offset](int x) { return x + offset; };  // a const closure crosses too
  REQUIRE(parallel::map(parallel::processes<Start>{.workers = 2}, add_offset, xs)[10] == 15);
  const std::vector<std::tuple<int, std::string>> pairs{{1, "a"}, {2, "bc"}};
  REQUIRE(parallel::starmap(
              parallel::processes<Start>{},
              [](int n, const std::string& s) { return std::to_string(n) + s; },
              pairs) == std::vector<std::string>{"1a", "2bc"});
  std::vector<int> seen;
  for (int v : parallel::imap(parallel::processes<Start>{.workers = 2}, square, xs))
    seen.push_back(v);
  REQUIRE(seen == expected);
  seen.clear();
  for (int v : parallel::imap_unordered(parallel::processes<Start>{}, square, xs))
    seen.push_back(v);
  std::sort(seen.begin(), seen.end());
  REQUIRE(seen == expected);
}

template <class Start>
void check_pool() {
  parallel::process_pool<Start> pool{{.workers = 2, .initializer = initialize}};
  REQUIRE(pool.size() == 2);
  // The initializer ran in the workers, not here.
  REQUIRE(initialized == 0);
  REQUIRE(pool.submit([](int) { return initialized; }, 0).get() == 7);
  REQUIRE(pool.submit([](int) { return static_cast<long>(::getpid()); }, 0).get() !=
          static_cast<long>(::getpid()));
  const std::vector<int> xs = iota_vector(1000);
  const auto squares = pool.map(square, xs, {.chunksize = 1});
  REQUIRE(squares[999] == 999 * 999);
  // A task that throws, a worker that dies, a timeout: the pool stays usable.
  REQUIRE_THROWS_AS(pool.map(
                        [](int x) {
                          if (x == 3) throw std::out_of_range("three");
                          return x;
                        },
                        xs),
                    parallel::remote_error);
  REQUIRE_THROWS_AS(pool.map(
                        [](int x) {
                          if (x == 5) std::raise(SIGKILL);
                          return x;
                        },
                        xs),
                    parallel::worker_died);
  REQUIRE_THROWS_AS(pool.map(
                        [](int x) {
                          if (x == 7) ::sleep(30);
                          return x;
                        },
                        xs, {.timeout = std::chrono::milliseconds(200)}),
                    parallel::timeout_error);
  REQUIRE(pool.map(square, xs) == squares);
}

}  // namespace

TEST_CASE("start::spawn runs the four verbs in re-executed workers", "[spawn]") {
  watchdog guard("spawn verbs", std::chrono::seconds(60));
  check_verbs<parallel::start::spawn>();
}

TEST_CASE("process_pool<start::spawn>: initializer, submit, failures", "[spawn]") {
  watchdog guard("spawn pool", std::chrono::seconds(60));
  check_pool<parallel::start::spawn>();
}

TEST_CASE("start::forkserver runs the four verbs in workers forked by the server", "[forkserver]") {
  watchdog guard("forkserver verbs", std::chrono::seconds(60));
  check_verbs<parallel::start::forkserver>();
}

TEST_CASE("process_pool<start::forkserver>: initializer, submit, failures", "[forkserver]") {
  watchdog guard("forkserver pool", std::chrono::seconds(60));
  check_pool<parallel::start::forkserver>();
}

TEST_CASE("the forkserver is reused and grows no descriptor and no child", "[forkserver]") {
  watchdog guard("forkserver reuse", std::chrono::seconds(60));
  const auto count_fds = [] {
    int n = 0;
    for (int fd = 0; fd < 4096; ++fd) n += ::fcntl(fd, F_GETFD) >= 0 ? 1 : 0;
    return n;
  };
  const std::vector<int> xs = iota_vector(50);
  // The first use starts the server (one child, one descriptor): count after it.
  (void)parallel::map(parallel::processes<parallel::start::forkserver>{.workers = 2}, square, xs);
  const int fds_before = count_fds();
  for (int round = 0; round < 20; ++round) {
    parallel::process_pool<parallel::start::forkserver> pool{{.workers = 2}};
    REQUIRE(pool.map(square, xs)[7] == 49);
  }
  REQUIRE(count_fds() == fds_before);
  // Every worker was reaped by the server: no child of ours but the server itself.
  int children = 0;
  const std::string path =
      "/proc/" + std::to_string(::getpid()) + "/task/" + std::to_string(::getpid()) + "/children";
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    long pid = 0;
    while (std::fscanf(f, "%ld", &pid) == 1) ++children;
    std::fclose(f);
    CHECK(children <= 1);
  }
}
