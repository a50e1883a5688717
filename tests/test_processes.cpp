// parallel::map / starmap / imap / imap_unordered on parallel::processes<start::fork> (workers
// forked at the call): results equal the plain loop for every kind of input and every worker
// count; imap reads a bounded window of an unbounded input. What crosses, the input and f's
// reference captures read in place, the options, large results (written with no page fault per
// page) and f returning void are in test_processes_values.cpp; the failure cases in tests/faults/.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
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
using fork_processes = parallel::processes<parallel::start::fork>;

/// Runs check(policy) for forked workers of every count the policy accepts, and the default.
template <class Check>
void for_each_process_policy(Check check) {
  for (int workers : {1, 2, 3, 0, -1}) {
    INFO("policy: processes<fork>{.workers = " << workers << "}");
    check(fork_processes{.workers = workers});
  }
  INFO("policy: processes<>{}");
  check(parallel::processes<>{});
}

}  // namespace

// --- the verbs, every input, every worker count ------------------------------------------------

TEST_CASE("processes: map gives the plain loop's results for every kind of input", "[processes]") {
  watchdog guard{"processes: map, every input", 60s};
  for_each_process_policy([](auto policy) {
    for (int n : {0, 1, 2, 1000}) {
      CAPTURE(n);
      const std::vector<int> items = numbers(n);
      const std::vector<int> expected = plain_loop(triple_plus_one, items);
      REQUIRE(parallel::map(policy, triple_plus_one, items) == expected);
      const std::list<int> listed(items.begin(), items.end());
      REQUIRE(parallel::map(policy, triple_plus_one, listed) == expected);
      REQUIRE(parallel::map(policy, triple_plus_one, std::views::iota(0, n)) == expected);
      single_pass generated{n};
      REQUIRE(parallel::map(policy, triple_plus_one, generated) == expected);
    }
  });
}

TEST_CASE("processes: starmap applies f to each tuple's elements", "[processes]") {
  watchdog guard{"processes: starmap", 60s};
  for_each_process_policy([](auto policy) {
    std::vector<std::tuple<int, int>> pairs;
    std::vector<int> expected;
    for (int i = 0; i < 300; ++i) {
      pairs.emplace_back(i, i % 7);
      expected.push_back(i * (i % 7) - 1);
    }
    REQUIRE(parallel::starmap(
                policy, [](int a, int b) { return a * b - 1; }, pairs) == expected);

    const std::vector<std::pair<std::string, int>> words{{"ab", 3}, {"", 5}, {"x", 0}};
    const std::vector<std::string> repeated{"ababab", "", ""};
    REQUIRE(parallel::starmap(
                policy,
                [](const std::string& s, int times) {
                  std::string out;
                  for (int k = 0; k < times; ++k) out += s;
                  return out;
                },
                words) == repeated);
    REQUIRE(parallel::starmap(
                policy, [](int a, int b) { return a + b; }, std::vector<std::tuple<int, int>>{})
                .empty());
  });
}

TEST_CASE("processes: imap yields the plain loop's results in input order", "[processes]") {
  watchdog guard{"processes: imap, every input", 60s};
  for_each_process_policy([](auto policy) {
    for (int n : {0, 1, 2, 1000}) {
      CAPTURE(n);
      const std::vector<int> items = numbers(n);
      const std::vector<int> expected = plain_loop(triple_plus_one, items);
      REQUIRE(collect(parallel::imap(policy, triple_plus_one, items)) == expected);
      const std::list<int> listed(items.begin(), items.end());
      REQUIRE(collect(parallel::imap(policy, triple_plus_one, listed)) == expected);
      REQUIRE(collect(parallel::imap(policy, triple_plus_one, std::views::iota(0, n))) == expected);
      single_pass generated{n};
      REQUIRE(collect(parallel::imap(policy, triple_plus_one, generated)) == expected);
      single_pass counted{n};
      REQUIRE(collect(parallel::imap(policy, triple_plus_one, counted)) == expected);
    }
  });
}

TEST_CASE("processes: imap_unordered yields the plain loop's results in some order",
          "[processes]") {
  watchdog guard{"processes: imap_unordered, every input", 60s};
  for_each_process_policy([](auto policy) {
    for (int n : {0, 1, 2, 1000}) {
      CAPTURE(n);
      const std::vector<int> items = numbers(n);
      const std::vector<int> expected = plain_loop(triple_plus_one, items);
      REQUIRE(sorted(collect(parallel::imap_unordered(policy, triple_plus_one, items))) ==
              expected);
      const std::list<int> listed(items.begin(), items.end());
      REQUIRE(sorted(collect(parallel::imap_unordered(policy, triple_plus_one, listed))) ==
              expected);
      REQUIRE(sorted(collect(parallel::imap_unordered(policy, triple_plus_one,
                                                      std::views::iota(0, n)))) == expected);
      single_pass generated{n};
      REQUIRE(sorted(collect(parallel::imap_unordered(policy, triple_plus_one, generated))) ==
              expected);
    }
  });
}

TEST_CASE("processes: 100000 items through every verb", "[processes]") {
  watchdog guard{"processes: 100000 items", 60s};
  const std::vector<int> items = numbers(100000);
  const std::vector<int> expected = plain_loop(triple_plus_one, items);
  const fork_processes policy{.workers = 2};
  REQUIRE(parallel::map(policy, triple_plus_one, items) == expected);
  REQUIRE(collect(parallel::imap(policy, triple_plus_one, items)) == expected);
  REQUIRE(sorted(collect(parallel::imap_unordered(policy, triple_plus_one, items))) == expected);
  single_pass generated{100000};
  REQUIRE(collect(parallel::imap(policy, triple_plus_one, generated)) == expected);
}

// --- unbounded input --------------------------------------------------------------------------

TEST_CASE("processes: imap over an unbounded iota returns promptly after a break", "[processes]") {
  watchdog guard{"processes: imap over iota(0)"};
  // "Promptly": against the same two calls over 100 items, in this run (test_support.hpp).
  const double healthy_ms = test_support::time_ms([] {
    REQUIRE(collect(parallel::imap(fork_processes{.workers = 2}, triple_plus_one, numbers(100)))
                .size() == 100);
    REQUIRE(collect(parallel::imap_unordered(fork_processes{.workers = 2}, triple_plus_one,
                                             numbers(100)))
                .size() == 100);
  });
  const auto start = std::chrono::steady_clock::now();
  int seen = 0;
  for (int r : parallel::imap(fork_processes{.workers = 2}, triple_plus_one, std::views::iota(0))) {
    REQUIRE(r == triple_plus_one(seen));
    if (++seen == 100) break;
  }
  REQUIRE(seen == 100);
  std::set<int> unordered;
  for (int r : parallel::imap_unordered(fork_processes{.workers = 2}, triple_plus_one,
                                        std::views::iota(0))) {
    REQUIRE(r % 3 == 1);
    unordered.insert(r);
    if (unordered.size() == 100) break;
  }
  REQUIRE(unordered.size() == 100);
  test_support::check_at_once("both loops left after 100 results", test_support::ms_since(start),
                              healthy_ms);
}

TEST_CASE("processes: imap reads a bounded window ahead of a single-pass input", "[processes]") {
  watchdog guard{"processes: imap read-ahead"};
  constexpr int taken = 50;
  SECTION("max_in_flight bounds what is read beyond the results taken") {
    for (std::size_t window : {std::size_t{1}, std::size_t{4}, std::size_t{16}}) {
      CAPTURE(window);
      single_pass input;  // unbounded
      int seen = 0;
      for (int r : parallel::imap(fork_processes{.workers = 2}, triple_plus_one, input,
                                  {.max_in_flight = window})) {
        REQUIRE(r == triple_plus_one(seen));
        if (++seen == taken) break;
      }
      REQUIRE(seen == taken);
      REQUIRE(input.reads() <= taken + static_cast<int>(window));
      REQUIRE(input.position() <= taken + static_cast<int>(window));
    }
  }
  SECTION("the automatic window is bounded too") {
    single_pass input;
    int seen = 0;
    for (int r : parallel::imap(fork_processes{.workers = 2}, triple_plus_one, input)) {
      REQUIRE(r == triple_plus_one(seen));
      if (++seen == taken) break;
    }
    REQUIRE(seen == taken);
    REQUIRE(input.position() <= taken + (1 << 17));
  }
}

#endif  // !_WIN32
