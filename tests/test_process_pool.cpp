// parallel::process_pool<start::fork> (process_pool.hpp): workers forked once and reused; each
// task ships its function, closure and items. The verbs equal the plain loop for every input;
// closures, function pointers and lambdas written after the pool was built run in its workers;
// submit's futures complete; every kind of value crosses; large results arrive intact. The
// pool's life (moves, two threads, its destructor, cancel, then, void tasks) is in
// test_process_pool_life.cpp, the failure cases in tests/faults/.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <list>
#include <parallel/parallel.hpp>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "process_test_support.hpp"
#include "test_support.hpp"

#if !defined(_WIN32)

namespace {

using namespace process_test_support;
using test_support::single_pass;
using test_support::watchdog;

using namespace std::chrono_literals;
using fork_pool = parallel::process_pool<parallel::start::fork>;

/// A closure factory (Python's power_factory): power(e) is a lambda capturing e by value.
const auto power = [](int e) {
  return [e](int x) {
    int r = 1;
    for (int k = 0; k < e; ++k) r *= x;
    return r;
  };
};

std::string describe(int n, const std::string& word, double weight) {
  return word + "#" + std::to_string(n) + "@" + std::to_string(static_cast<int>(weight * 10));
}

}  // namespace

// --- the verbs, every input -------------------------------------------------------------------

TEST_CASE("process_pool: map, imap and imap_unordered give the plain loop's results",
          "[process_pool]") {
  watchdog guard{"process_pool: verbs, every input", 60s};
  fork_pool pool{{.workers = 2}};
  REQUIRE(pool.size() == 2);
  for (int n : {0, 1, 2, 1000}) {
    CAPTURE(n);
    const std::vector<int> items = numbers(n);
    const std::vector<int> expected = plain_loop(triple_plus_one, items);
    const std::list<int> listed(items.begin(), items.end());

    REQUIRE(pool.map(triple_plus_one, items) == expected);
    REQUIRE(pool.map(triple_plus_one, listed) == expected);
    REQUIRE(pool.map(triple_plus_one, std::views::iota(0, n)) == expected);
    single_pass generated{n};
    REQUIRE(pool.map(triple_plus_one, generated) == expected);

    REQUIRE(collect(pool.imap(triple_plus_one, items)) == expected);
    REQUIRE(collect(pool.imap(triple_plus_one, listed)) == expected);
    REQUIRE(collect(pool.imap(triple_plus_one, std::views::iota(0, n))) == expected);
    single_pass generated_again{n};
    REQUIRE(collect(pool.imap(triple_plus_one, generated_again)) == expected);
    single_pass counted{n};
    REQUIRE(collect(pool.imap(triple_plus_one, counted)) == expected);

    REQUIRE(sorted(collect(pool.imap_unordered(triple_plus_one, items))) == expected);
    REQUIRE(sorted(collect(pool.imap_unordered(triple_plus_one, listed))) == expected);
    single_pass generated_unordered{n};
    REQUIRE(sorted(collect(pool.imap_unordered(triple_plus_one, generated_unordered))) == expected);
  }
}

TEST_CASE("process_pool: pools of other sizes", "[process_pool]") {
  watchdog guard{"process_pool: sizes", 60s};
  const std::vector<int> items = numbers(500);
  const std::vector<int> expected = plain_loop(triple_plus_one, items);
  for (int workers : {1, 3, 0, -1}) {
    CAPTURE(workers);
    fork_pool pool{{.workers = workers}};
    REQUIRE(pool.size() >= 1);
    REQUIRE(pool.map(triple_plus_one, items) == expected);
    REQUIRE(collect(pool.imap(triple_plus_one, items)) == expected);
  }
  fork_pool defaulted;
  REQUIRE(defaulted.size() >= 1);
  REQUIRE(defaulted.map(triple_plus_one, items) == expected);
}

TEST_CASE("process_pool: 100000 items through every verb", "[process_pool]") {
  watchdog guard{"process_pool: 100000 items", 60s};
  fork_pool pool{{.workers = 2}};
  const std::vector<int> items = numbers(100000);
  const std::vector<int> expected = plain_loop(triple_plus_one, items);
  REQUIRE(pool.map(triple_plus_one, items) == expected);
  REQUIRE(collect(pool.imap(triple_plus_one, items)) == expected);
  REQUIRE(sorted(collect(pool.imap_unordered(triple_plus_one, items))) == expected);
}

TEST_CASE("process_pool: imap over an unbounded input stops promptly, reading a bounded window",
          "[process_pool]") {
  watchdog guard{"process_pool: unbounded imap"};
  fork_pool pool{{.workers = 2}};
  // "Promptly": against the same imap over 100 items, in this run (test_support.hpp).
  const double healthy_ms = test_support::time_ms(
      [&] { REQUIRE(collect(pool.imap(triple_plus_one, numbers(100))).size() == 100); });
  const auto start = std::chrono::steady_clock::now();
  int seen = 0;
  for (int r : pool.imap(triple_plus_one, std::views::iota(0))) {
    REQUIRE(r == triple_plus_one(seen));
    if (++seen == 100) break;
  }
  REQUIRE(seen == 100);
  test_support::check_at_once("100 results and the loop left", test_support::ms_since(start),
                              healthy_ms);

  single_pass input;  // unbounded, single pass
  seen = 0;
  for (int r : pool.imap(triple_plus_one, input, {.max_in_flight = 4})) {
    REQUIRE(r == triple_plus_one(seen));
    if (++seen == 50) break;
  }
  REQUIRE(seen == 50);
  REQUIRE(input.position() <= 50 + 4);
  // The pool is still usable after a loop was left early.
  REQUIRE(pool.map(triple_plus_one, numbers(10)) == plain_loop(triple_plus_one, numbers(10)));
}

// --- functions that cross ---------------------------------------------------------------------

TEST_CASE("process_pool: closures, function pointers and captureless lambdas run in the workers",
          "[process_pool]") {
  watchdog guard{"process_pool: callables"};
  fork_pool pool{{.workers = 2}};
  const std::vector<int> items = numbers(20);
  for (int e : {0, 1, 2, 3}) {
    CAPTURE(e);
    REQUIRE(pool.map(power(e), items) == plain_loop(power(e), items));
    REQUIRE(collect(pool.imap(power(e), items)) == plain_loop(power(e), items));
  }
  int (*pointer)(int) = &triple_plus_one;
  REQUIRE(pool.map(pointer, items) == plain_loop(triple_plus_one, items));
  REQUIRE(pool.map(triple_plus_one, items) == plain_loop(triple_plus_one, items));
  const auto negate = [](int x) { return -x; };
  REQUIRE(pool.map(negate, items) == plain_loop(negate, items));
  // A closure capturing several numbers of different types.
  const double scale = 0.5;
  long offset = 1000;  // not const: captured, not folded
  const auto affine = [scale, offset](int x) { return scale * x + static_cast<double>(offset); };
  REQUIRE(pool.map(affine, items) == plain_loop(affine, items));
  // A mutable closure: each task runs on a copy of the captures as they were at the call.
  auto numbering = [next = 100](int x) mutable {
    ++next;
    return next > 100 ? x : -1;
  };
  REQUIRE(pool.map(numbering, items) == items);
}

TEST_CASE("process_pool: a lambda written after the pool was built runs in its workers",
          "[process_pool]") {
  watchdog guard{"process_pool: lambda after the pool"};
  fork_pool pool{{.workers = 2}};
  const std::vector<int> items = numbers(100);
  int bias = 17;  // not const: captured, not folded
  const auto later = [bias](int x) { return std::to_string(x * x + bias); };
  REQUIRE(pool.map(later, items) == plain_loop(later, items));
  const auto another = [](const std::string& s) { return s + s; };
  const std::vector<std::string> words{"a", "bc", ""};
  REQUIRE(collect(pool.imap(another, words)) == plain_loop(another, words));
}

// A reference or pointer capture would cross as an address, which means nothing (or a stale
// copy-on-write snapshot) in a worker. C++ cannot tell it from an integer capture by type, so the
// call refuses it at run time: the closure's bytes hold the address of mapped memory.
TEST_CASE("process_pool: a closure capturing by reference is refused, never run on stale memory",
          "[process_pool]") {
  watchdog guard{"process_pool: reference capture"};
  std::vector<int> values(3, 1);
  fork_pool pool{{.workers = 1}};
  values = {10, 20, 30};  // same buffer, changed after the workers were forked
  const auto read = [&values](int i) { return values[static_cast<std::size_t>(i)]; };
  REQUIRE_THROWS_WITH(pool.map(read, numbers(3)), Catch::Matchers::Contains("captures an address"));
  const int* first = values.data();
  REQUIRE_THROWS_AS(pool.submit([first](int i) { return first[i]; }, 0), parallel::error);
  // Values captured by copy cross, and the pool is still fine.
  int offset = 5;  // not const: a const int would not need capturing
  REQUIRE(pool.map([offset](int i) { return i + offset; }, numbers(3)) ==
          std::vector<int>{5, 6, 7});
}

TEST_CASE("process_pool: starmap applies f to each tuple's elements", "[process_pool]") {
  watchdog guard{"process_pool: starmap"};
  fork_pool pool{{.workers = 2}};
  std::vector<std::tuple<int, int>> pairs;
  std::vector<int> expected;
  for (int i = 0; i < 300; ++i) {
    pairs.emplace_back(i, i % 5);
    expected.push_back(power(i % 5)(i % 10));
  }
  // A two-argument pow, like Python's slow_pow(x, y), without the sleep.
  const auto pow = [](int base, int e) { return power(e)(base % 10); };
  REQUIRE(pool.starmap(pow, pairs) == expected);
  const std::vector<std::tuple<int, std::string, double>> rows{{1, "one", 1.5}, {2, "", 0.0}};
  REQUIRE(pool.starmap(describe, rows) ==
          std::vector<std::string>{describe(1, "one", 1.5), describe(2, "", 0.0)});
  REQUIRE(pool.starmap(pow, std::vector<std::tuple<int, int>>{}).empty());
}

// --- submit -----------------------------------------------------------------------------------

TEST_CASE("process_pool: submit runs f(args...) in a worker and its future gets the value",
          "[process_pool]") {
  watchdog guard{"process_pool: submit"};
  fork_pool pool{{.workers = 2}};
  parallel::future<std::string> described = pool.submit(describe, 7, std::string("seven"), 0.75);
  parallel::future<int> cubed = pool.submit(power(3), 4);
  parallel::future<int> pid = pool.submit([] { return current_pid(); });
  const std::string word = "by reference";
  parallel::future<std::size_t> length =
      pool.submit([](const std::string& s, int extra) { return s.size() + extra; }, word, 3);
  REQUIRE(described.wait_for(10s) == std::future_status::ready);
  REQUIRE(described.is_ready());
  REQUIRE(described.get() == describe(7, "seven", 0.75));
  REQUIRE_FALSE(described.valid());
  REQUIRE(cubed.get() == 64);
  const int worker = pid.get();
  REQUIRE(worker != current_pid());
  REQUIRE(length.get() == word.size() + 3);

  parallel::future<int> slow = pool.submit(
      [](int x) {
        std::this_thread::sleep_for(300ms);
        return x;
      },
      5);
  REQUIRE(slow.wait_for(1ms) == std::future_status::timeout);
  REQUIRE(slow.get() == 5);
}

TEST_CASE("process_pool: 1000 submitted calls all complete", "[process_pool]") {
  watchdog guard{"process_pool: 1000 submits"};
  fork_pool pool{{.workers = 2}};
  std::vector<parallel::future<int>> futures;
  for (int i = 0; i < 1000; ++i) futures.push_back(pool.submit(triple_plus_one, i));
  for (int i = 0; i < 1000; ++i) {
    CAPTURE(i);
    REQUIRE(futures[static_cast<std::size_t>(i)].get() == triple_plus_one(i));
  }
  std::vector<parallel::future<std::string>> words;
  for (int i = 0; i < 200; ++i)
    words.push_back(pool.submit(describe, i, std::string(static_cast<std::size_t>(i), 'w'), 0.5));
  for (int i = 0; i < 200; ++i)
    REQUIRE(words[static_cast<std::size_t>(i)].get() ==
            describe(i, std::string(static_cast<std::size_t>(i), 'w'), 0.5));
}

// --- what crosses
// ---------------------------------------------------------------------------------

TEST_CASE("process_pool: every kind of value crosses as argument and result", "[process_pool]") {
  watchdog guard{"process_pool: values cross", 60s};
  fork_pool pool{{.workers = 2}};
  check_every_kind_of_value(pool);
  REQUIRE(pool.submit(
                  [](const labelled_point& p, const sample& s) {
                    return labelled_point{p.x + s.id, p.y, p.label + s.grade};
                  },
                  labelled_point{1, 2, "p"}, sample{0.0, 10, 'q'})
              .get() == labelled_point{11, 2, "pq"});
}

// --- options ----------------------------------------------------------------------------------

TEST_CASE("process_pool: chunksize, max_in_flight, progress and timeout", "[process_pool]") {
  watchdog guard{"process_pool: options", 60s};
  fork_pool pool{{.workers = 2}};
  const std::vector<int> items = numbers(2000);
  const std::vector<int> expected = plain_loop(triple_plus_one, items);
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
    CAPTURE(chunk);
    const parallel::options opts{.chunksize = chunk};
    REQUIRE(pool.map(triple_plus_one, items, opts) == expected);
    REQUIRE(collect(pool.imap(triple_plus_one, items, opts)) == expected);
    REQUIRE(sorted(collect(pool.imap_unordered(triple_plus_one, items, opts))) == expected);
  }
  for (std::size_t window : {std::size_t{1}, std::size_t{4}}) {
    CAPTURE(window);
    const parallel::options opts{.max_in_flight = window};
    REQUIRE(collect(pool.imap(triple_plus_one, items, opts)) == expected);
    REQUIRE(sorted(collect(pool.imap_unordered(triple_plus_one, items, opts))) == expected);
  }
  {
    std::vector<std::pair<std::size_t, std::size_t>> calls;
    std::set<std::thread::id> threads;
    const parallel::options opts{.progress = [&](std::size_t done, std::size_t total) {
      calls.emplace_back(done, total);
      threads.insert(std::this_thread::get_id());
    }};
    REQUIRE(pool.map(triple_plus_one, items, opts) == expected);
    REQUIRE(!calls.empty());
    for (std::size_t k = 0; k < calls.size(); ++k) {
      CAPTURE(k);
      REQUIRE(calls[k].second == items.size());
      if (k > 0) REQUIRE(calls[k - 1].first <= calls[k].first);
    }
    REQUIRE(calls.back().first == items.size());
    REQUIRE(threads == std::set<std::thread::id>{std::this_thread::get_id()});
  }
  {
    const parallel::options opts{.timeout = 10s};
    REQUIRE(pool.map(triple_plus_one, items, opts) == expected);
    REQUIRE(collect(pool.imap(triple_plus_one, items, opts)) == expected);
  }
}

// --- large results ----------------------------------------------------------------------------

TEST_CASE("process_pool: large results arrive intact", "[process_pool]") {
  watchdog guard{"process_pool: large results", 120s};
  fork_pool pool{{.workers = 2}};
  SECTION("one 64 MiB result") {
    constexpr std::size_t size = std::size_t{64} << 20;
    const auto one =
        pool.map([](int i) { return patterned(static_cast<std::size_t>(i), size); }, numbers(1));
    REQUIRE(one.size() == 1);
    REQUIRE(has_pattern(one[0], 0, size));
    auto submitted =
        pool.submit([](int i) { return patterned(static_cast<std::size_t>(i), size); }, 3);
    REQUIRE(has_pattern(submitted.get(), 3, size));
  }
  SECTION("200 results of 1 MiB") {
    constexpr std::size_t size = std::size_t{1} << 20;
    const auto make = [](int i) { return patterned(static_cast<std::size_t>(i), size); };
    const auto many = pool.map(make, numbers(200));
    REQUIRE(many.size() == 200);
    for (std::size_t i = 0; i < many.size(); ++i) {
      CAPTURE(i);
      REQUIRE(has_pattern(many[i], i, size));
    }
  }
  SECTION("a 16 MiB argument") {
    const std::vector<char> big = patterned(5, std::size_t{16} << 20);
    auto sum = pool.submit(
        [](const std::vector<char>& bytes) {
          long long s = 0;
          for (char c : bytes) s += static_cast<unsigned char>(c);
          return s;
        },
        big);
    long long expected = 0;
    for (char c : big) expected += static_cast<unsigned char>(c);
    REQUIRE(sum.get() == expected);
  }
}

TEST_CASE("process_pool: four workers on two cores all deliver results", "[process_pool]") {
  watchdog guard{"process_pool: oversubscribed"};
  fork_pool pool{{.workers = 4}};
  REQUIRE(pool.size() == 4);
  const auto results = pool.map(
      [](int i) {
        std::this_thread::sleep_for(5ms);
        return std::pair<int, int>{current_pid(), triple_plus_one(i)};
      },
      numbers(64), {.chunksize = 1});
  std::set<int> pids;
  for (std::size_t i = 0; i < results.size(); ++i) {
    REQUIRE(results[i].second == triple_plus_one(static_cast<int>(i)));
    REQUIRE(results[i].first != current_pid());
    pids.insert(results[i].first);
  }
  REQUIRE(results.size() == 64);
  REQUIRE(pids.size() >= 2);
  REQUIRE(pids.size() <= 4);
}

TEST_CASE("process_pool: a function whose items were cheap and got slow still runs on every worker",
          "[process_pool]") {
  // Short jobs go to one worker (waking the other costs more than they do); when they turn out
  // slow, the idle worker takes back those not started.
  watchdog guard{"process_pool: cheap items that got slow"};
  fork_pool pool{{.workers = 2}};
  const auto sleep_then_pid = [](int ms) {
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return current_pid();
  };
  const std::vector<int> cheap(40, 0);
  for (int call = 0; call < 50; ++call) REQUIRE(pool.map(sleep_then_pid, cheap).size() == 40);
  const std::vector<int> slow(4, 300);
  const auto pids = pool.map(sleep_then_pid, slow);
  CHECK(std::set<int>(pids.begin(), pids.end()).size() == 2);
}

#endif  // !_WIN32
