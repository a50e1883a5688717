// parallel::mpi and parallel::mpi_pool, run by ctest under mpirun with 3 ranks and with 1 (see
// CMakeLists.txt). These cases run on rank 0; the other ranks serve their tasks.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <parallel/mpi.hpp>
#include <parallel/parallel.hpp>
#include <ranges>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../catch.hpp"

namespace {

int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

int my_rank(int) {
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// The ranks that serve tasks: 1..size-1, or rank 0 itself when it is alone.
std::set<int> serving_ranks() {
  std::set<int> out;
  for (int r = 1; r < world_size(); ++r) out.insert(r);
  if (out.empty()) out.insert(0);
  return out;
}

int square(int x) { return x * x; }

double slow_pow(double base, int exponent) {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return std::pow(base, exponent);
}

std::vector<int> iota_vector(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

TEST_CASE("map over MPI ranks gives the results in input order", "[mpi]") {
  const auto xs = iota_vector(1000);
  const std::vector<int> squares = parallel::map(parallel::mpi{}, square, xs);
  REQUIRE(squares.size() == xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) REQUIRE(squares[i] == xs[i] * xs[i]);
}

TEST_CASE("every serving rank takes tasks (dynamic scheduling, chunks of 1)", "[mpi]") {
  // A rank takes tasks once it has said hello; on a loaded machine one may start up late, so
  // the calls repeat (for at most 30 s) until every rank has run some.
  const auto xs = iota_vector(64);
  std::set<int> seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (seen != serving_ranks() && std::chrono::steady_clock::now() < deadline) {
    const std::vector<int> ranks = parallel::map(parallel::mpi{}, my_rank, xs, {.chunksize = 1});
    seen.insert(ranks.begin(), ranks.end());
  }
  REQUIRE(seen == serving_ranks());
}

TEST_CASE("starmap and lambdas that capture numbers cross to the ranks", "[mpi]") {
  std::vector<std::tuple<double, int>> args{{2.0, 3}, {3.0, 2}, {10.0, 0}, {1.5, 2}};
  const auto powers = parallel::starmap(parallel::mpi{}, slow_pow, args);
  REQUIRE(powers == std::vector<double>{8.0, 9.0, 1.0, 2.25});

  int offset = 7;  // not const: a const int would not need capturing
  double scale = 0.5;
  const auto shifted = parallel::map(
      parallel::mpi{}, [offset, scale](int x) { return (x + offset) * scale; }, iota_vector(5));
  REQUIRE(shifted == std::vector<double>{3.5, 4.0, 4.5, 5.0, 5.5});
}

TEST_CASE("strings, maps and 1 MiB results cross", "[mpi]") {
  const std::vector<std::string> words{"a", "bb", "ccc"};
  const auto lengths = parallel::map(
      parallel::mpi{},
      [](const std::string& w) {
        return std::map<std::string, std::size_t>{{w, w.size()}};
      },
      words);
  REQUIRE(lengths[2].at("ccc") == 3);

  const auto big = parallel::map(
      parallel::mpi{},
      [](int i) { return std::vector<char>(std::size_t{1} << 20, static_cast<char>('a' + i)); },
      iota_vector(8));
  REQUIRE(big.size() == 8);
  for (int i = 0; i < 8; ++i) {
    REQUIRE(big[static_cast<std::size_t>(i)].size() == (std::size_t{1} << 20));
    REQUIRE(big[static_cast<std::size_t>(i)].back() == static_cast<char>('a' + i));
  }
}

TEST_CASE("imap yields in input order, and imap_unordered yields every result", "[mpi]") {
  const auto xs = iota_vector(200);
  std::vector<int> ordered;
  for (int v : parallel::imap(parallel::mpi{}, square, xs, {.chunksize = 3})) ordered.push_back(v);
  std::vector<int> expected;
  for (int x : xs) expected.push_back(x * x);
  REQUIRE(ordered == expected);

  std::multiset<int> unordered;
  for (int v : parallel::imap_unordered(parallel::mpi{}, square, xs)) unordered.insert(v);
  REQUIRE(unordered == std::multiset<int>(expected.begin(), expected.end()));
}

TEST_CASE("imap over MPI reads std::views::istream, and an input that throws part-way", "[mpi]") {
  std::istringstream in("1 2 3 4 5 6");
  std::vector<int> got;
  for (int v : parallel::imap(parallel::mpi{}, square, std::views::istream<int>(in)))
    got.push_back(v);
  REQUIRE(got == std::vector<int>{1, 4, 9, 16, 25, 36});

  // Every result of the items before the failure arrives first, then the input's exception.
  auto breaks_at_25 = std::views::iota(0, 40) | std::views::transform([](int i) {
                        if (i == 25) throw std::runtime_error("the input broke at item 25");
                        return i;
                      });
  for (const bool ordered : {true, false}) {
    CAPTURE(ordered);
    std::vector<int> before;
    auto consume = [&before](auto&& results) {
      for (int v : results) before.push_back(v);
    };
    REQUIRE_THROWS_WITH(
        ordered ? consume(parallel::imap(parallel::mpi{}, square, breaks_at_25, {.chunksize = 4}))
                : consume(parallel::imap_unordered(parallel::mpi{}, square, breaks_at_25)),
        "the input broke at item 25");
    std::sort(before.begin(), before.end());
    std::vector<int> expected;
    for (int i = 0; i < 25; ++i) expected.push_back(i * i);
    REQUIRE(before == expected);
  }
}

TEST_CASE("imap over MPI is lazy: an endless input, left after 20 results", "[mpi]") {
  std::atomic<long> read{0};
  auto endless = std::views::iota(0) | std::views::transform([&read](int i) {
                   read.fetch_add(1);
                   return i;
                 });
  std::vector<int> got;
  for (int v : parallel::imap(parallel::mpi{}, square, endless, {.max_in_flight = 8})) {
    got.push_back(v);
    if (got.size() == 20) break;
  }
  REQUIRE(got.size() == 20);
  REQUIRE(got[19] == 19 * 19);
  CHECK(read.load() <= 20 + 8);
}

TEST_CASE("a task's exception reaches rank 0 as remote_error naming item, type and rank", "[mpi]") {
  const auto xs = iota_vector(50);
  try {
    (void)parallel::map(
        parallel::mpi{},
        [](int x) {
          if (x == 17) throw std::out_of_range("seventeen");
          return x;
        },
        xs);
    FAIL("no exception");
  } catch (const parallel::remote_error& e) {
    CHECK(e.index() == 17);
    CHECK(e.type_name() == "std::out_of_range");
    CHECK(std::string(e.what()).find("seventeen") != std::string::npos);
    CHECK(std::string(e.what()).find("on MPI rank") != std::string::npos);
  }
  // The ranks go on serving.
  REQUIRE(parallel::map(parallel::mpi{}, square, std::vector<int>{3}) == std::vector<int>{9});
}

TEST_CASE("options: progress reaches done == total, and a timeout that is not hit changes nothing",
          "[mpi]") {
  std::size_t last_done = 0;
  std::size_t last_total = 0;
  const auto xs = iota_vector(100);
  const auto out = parallel::map(parallel::mpi{}, square, xs,
                                 {.chunksize = 10,
                                  .progress =
                                      [&](std::size_t done, std::size_t total) {
                                        last_done = done;
                                        last_total = total;
                                      },
                                  .timeout = std::chrono::seconds(30)});
  REQUIRE(out.size() == 100);
  CHECK(last_done == 100);
  CHECK(last_total == 100);
}

TEST_CASE("mpi_pool: submit, map, and workers = 1 keeps to rank 1", "[mpi]") {
  parallel::mpi_pool pool;
  CHECK(pool.size() == serving_ranks().size());
  auto product = pool.submit([](int a, int b) { return a * b; }, 6, 7);
  auto power = pool.submit(slow_pow, 2.0, 10);
  CHECK(product.get() == 42);
  CHECK(power.get() == 1024.0);

  auto failing =
      pool.submit([](int x) -> int { throw std::invalid_argument("bad " + std::to_string(x)); }, 5);
  CHECK_THROWS_AS(failing.get(), parallel::remote_error);

  if (world_size() > 2) {
    parallel::mpi_pool first{{.workers = 1}};
    CHECK(first.size() == 1);
    const auto ranks = first.map(my_rank, iota_vector(16), {.chunksize = 1});
    CHECK(std::set<int>(ranks.begin(), ranks.end()) == std::set<int>{1});
  }
  std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}};
  CHECK(pool.starmap([](int a, int b) { return a + b; }, pairs) == std::vector<int>{3, 7});
}

TEST_CASE("a closure that captures an address is refused before it is sent", "[mpi]") {
  int local = 3;
  int* where = &local;
  CHECK_THROWS_AS(parallel::map(
                      parallel::mpi{}, [where](int x) { return x + *where; }, iota_vector(3)),
                  parallel::error);
}

TEST_CASE("a task cannot start MPI calls itself: only rank 0 drives", "[mpi]") {
  if (world_size() == 1) return;  // alone, rank 0 runs its tasks itself
  try {
    (void)parallel::map(
        parallel::mpi{},
        [](int x) { return parallel::map(parallel::mpi{}, square, std::vector<int>{x}).front(); },
        iota_vector(2));
    FAIL("no exception");
  } catch (const parallel::remote_error& e) {
    CHECK(e.type_name() == "parallel::error");
    CHECK(std::string(e.what()).find("only rank 0 drives") != std::string::npos);
  }
}

namespace {

/// A task that holds its rank until the test creates the file `path` (bounded: 10 s), after
/// leaving `path`.started. Ranks run on one machine here, so a file is a gate they all see.
int gated(const std::string& path, int value) {
  std::ofstream(path + ".started") << "started\n";
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!std::filesystem::exists(path)) {
    if (std::chrono::steady_clock::now() > until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return value;
}

bool appears(const std::string& path) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!std::filesystem::exists(path)) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void must_be_positive(int x) {
  if (x <= 0) throw std::invalid_argument("not positive: " + std::to_string(x));
}

}  // namespace

TEST_CASE("mpi_pool: cancel, then, as_completed and void tasks", "[mpi][futures]") {
  parallel::mpi_pool pool;
  // void f: map returns void, submit gives future<void>; an exception still arrives.
  static_assert(std::is_void_v<decltype(pool.map(must_be_positive, iota_vector(1)))>);
  pool.map(must_be_positive, std::vector<int>{1, 2, 3});
  parallel::map(parallel::mpi{}, must_be_positive, std::vector<int>{4, 5});
  parallel::future<void> fine = pool.submit(must_be_positive, 1);
  CHECK_NOTHROW(fine.get());
  CHECK_THROWS_AS(pool.submit(must_be_positive, 0).get(), parallel::remote_error);
  CHECK_THROWS_AS(pool.map(must_be_positive, std::vector<int>{1, 0}), parallel::remote_error);

  // then: g runs in this process once the rank's result is there.
  CHECK(pool.submit(square, 6).then([](int r) { return r + 1; }).get() == 37);

  // as_completed over the ranks' futures.
  std::vector<parallel::future<int>> futs;
  for (int i = 0; i < 20; ++i) futs.push_back(pool.submit(square, i));
  std::set<int> seen;
  for (parallel::future<int>& f : parallel::as_completed(futs)) seen.insert(f.get());
  CHECK(seen.size() == 20);

  // cancel: a task still queued at rank 0 is taken back; one a rank runs is not.
  if (world_size() > 1) {
    parallel::mpi_pool one{{.workers = 1}};
    const std::string gate = (std::filesystem::temp_directory_path() /
                              ("parallel-mpi-gate." + std::to_string(::getpid())))
                                 .string();
    std::filesystem::remove(gate);
    std::filesystem::remove(gate + ".started");
    auto running = one.submit(gated, gate, 7);
    REQUIRE(appears(gate + ".started"));
    std::vector<parallel::future<int>> behind;
    for (int i = 0; i < 6; ++i) behind.push_back(one.submit(square, i));
    CHECK(behind.back().cancel());  // a rank holds at most two jobs: the last is queued
    CHECK_FALSE(running.cancel());
    std::ofstream(gate) << "open\n";
    CHECK(running.get() == 7);
    CHECK_THROWS_AS(behind.back().get(), parallel::cancelled_error);
    for (int i = 0; i < 5; ++i) CHECK(behind[static_cast<std::size_t>(i)].get() == i * i);
    std::filesystem::remove(gate);
    std::filesystem::remove(gate + ".started");
  }
}
