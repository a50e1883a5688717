// parallel::imap and parallel::imap_unordered (map.hpp): lazy, ordered (or completion-ordered)
// results over any input range, including unbounded ones; a bounded read-ahead window;
// leaving the loop early stops the work; f's exception arrives after the results before it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <parallel/parallel.hpp>
#include <ranges>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

namespace {

using test_support::for_each_policy;
using test_support::no_default;
using test_support::single_pass;

using test_support::watchdog;

using namespace std::chrono_literals;

int triple_plus_one(int x) { return x * 3 + 1; }

std::vector<int> numbers(int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(i);
  return out;
}

struct item_failed {
  int index;
};

/// The item at which f throws in the exception tests.
constexpr int failing = 50;

template <class Range>
std::vector<int> collect(Range&& results) {
  std::vector<int> out;
  for (auto& r : results) out.push_back(r);
  return out;
}

}  // namespace

TEST_CASE("imap: yields results in input order", "[imap]") {
  watchdog guard{"imap: yields results in input order"};
  for_each_policy([](auto policy) {
    for (int n : {0, 1, 2, 1000}) {
      CAPTURE(n);
      const std::vector<int> expected = [n] {
        std::vector<int> out;
        for (int i = 0; i < n; ++i) out.push_back(triple_plus_one(i));
        return out;
      }();
      const std::vector<int> items = numbers(n);
      REQUIRE(collect(parallel::imap(policy, triple_plus_one, items)) == expected);
      std::list<int> list_items(items.begin(), items.end());
      REQUIRE(collect(parallel::imap(policy, triple_plus_one, list_items)) == expected);
      REQUIRE(collect(parallel::imap(policy, triple_plus_one,
                                     std::views::iota(0, n) | std::views::transform([](int i) {
                                       return i;
                                     }))) == expected);
      single_pass generated{n};
      REQUIRE(collect(parallel::imap(policy, triple_plus_one, generated)) == expected);
      for (std::size_t chunksize :
           {std::size_t{1}, std::size_t{7}, static_cast<std::size_t>(n) + 5}) {
        CAPTURE(chunksize);
        REQUIRE(collect(parallel::imap(policy, triple_plus_one, items,
                                       parallel::options{.chunksize = chunksize})) == expected);
      }
    }
  });
  parallel::thread_pool pool{2};
  REQUIRE(collect(pool.imap(triple_plus_one, numbers(500))) ==
          collect(parallel::imap(parallel::sequential{}, triple_plus_one, numbers(500))));
  REQUIRE(collect(parallel::imap(triple_plus_one, numbers(3))) == std::vector<int>{1, 4, 7});
}

TEST_CASE("imap: works on an unbounded view and stops at break", "[imap]") {
  watchdog guard{"imap: works on an unbounded view and stops at break"};
  for_each_policy([](auto policy) {
    std::vector<int> got;
    for (int& v : parallel::imap(policy, triple_plus_one, std::views::iota(0))) {
      got.push_back(v);
      if (got.size() == 100) break;
    }
    REQUIRE(got.size() == 100);
    for (int i = 0; i < 100; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == triple_plus_one(i));
  });
}

TEST_CASE("imap: reads at most max_in_flight items ahead", "[imap]") {
  watchdog guard{"imap: reads at most max_in_flight items ahead"};
  constexpr int window = 16;
  // Read so far <= the one being looked at + the window, with as much again as slack.
  constexpr int bound = 1 + 2 * window;
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{0}}) {
    CAPTURE(chunksize);
    single_pass items;  // unbounded: an eager reader never stops
    auto results =
        parallel::imap(parallel::threads{}, triple_plus_one, items,
                       parallel::options{.chunksize = chunksize, .max_in_flight = window});
    auto it = results.begin();
    REQUIRE(it != results.end());
    REQUIRE(*it == triple_plus_one(0));
    CHECK(items.reads() <= bound);
    std::this_thread::sleep_for(100ms);  // give a runaway reader time to show itself
    CHECK(items.reads() <= bound);
    ++it;
    REQUIRE(*it == triple_plus_one(1));
    std::this_thread::sleep_for(50ms);
    CHECK(items.reads() <= bound + 1);
  }
}

TEST_CASE("imap: the default read-ahead is bounded", "[imap]") {
  watchdog guard{"imap: the default read-ahead is bounded"};
  single_pass items;  // unbounded
  auto results = parallel::imap(parallel::threads{}, triple_plus_one, items);
  auto it = results.begin();
  REQUIRE(*it == 1);
  // A bounded reader fills its window and then stops: the count settles. An unbounded one
  // keeps reading for the whole 5 s.
  bool settled = false;
  int previous = items.reads();
  for (int round = 0; round < 50 && !settled; ++round) {
    std::this_thread::sleep_for(100ms);
    const int now = items.reads();
    settled = now == previous;
    previous = now;
  }
  INFO("items read while the consumer held its first result: " << previous);
  REQUIRE(settled);
}

TEST_CASE("imap: leaving the loop early stops the work promptly", "[imap]") {
  watchdog guard{"imap: leaving the loop early stops the work promptly"};
  constexpr int window = 16;
  constexpr int taken = 10;
  for_each_policy([](auto policy) {
    std::atomic<int> calls{0};
    {
      int seen = 0;
      for (int& v : parallel::imap(
               policy,
               [&calls](int x) {
                 calls.fetch_add(1);
                 std::this_thread::sleep_for(1ms);
                 return x;
               },
               std::views::iota(0, 100'000), parallel::options{.max_in_flight = window})) {
        REQUIRE(v == seen);
        if (++seen == taken) break;
      }
    }
    std::this_thread::sleep_for(100ms);
    const int after_destruction = calls.load();
    CHECK(after_destruction <= taken + 2 * window);
    std::this_thread::sleep_for(100ms);
    CHECK(calls.load() == after_destruction);
  });
}

TEST_CASE("imap: the consumer runs the chunks itself while every worker is busy", "[imap]") {
  watchdog guard{"imap: the consumer runs the chunks itself while every worker is busy"};
  parallel::thread_pool pool(1);
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};
  // The pool's only worker is held until the loops below are over (or 30 s have passed).
  auto held = pool.submit([&] {
    started = true;
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (!release && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
    return release.load();
  });
  while (!started) std::this_thread::sleep_for(1ms);
  const auto consumer = std::this_thread::get_id();
  auto here = [consumer](int x) { return std::this_thread::get_id() == consumer ? x : -1; };
  const std::vector<int> items = numbers(5000);
  CHECK(collect(pool.imap(here, items)) == items);
  std::vector<int> unordered = collect(pool.imap_unordered(here, items));
  std::ranges::sort(unordered);
  CHECK(unordered == items);
  release = true;
  CHECK(held.get());  // released by this thread, not by its time limit
}

TEST_CASE("imap: destroying an unconsumed range does not hang", "[imap]") {
  watchdog guard{"imap: destroying an unconsumed range does not hang"};
  const std::vector<int> items = numbers(10000);
  { auto untouched = parallel::imap(parallel::threads{}, triple_plus_one, items); }
  {
    auto started = parallel::imap(parallel::threads{}, triple_plus_one, items);
    auto it = started.begin();
    REQUIRE(*it == 1);
  }
  {
    auto started =
        parallel::imap_unordered(parallel::threads{}, triple_plus_one, std::views::iota(0));
    auto it = started.begin();
    REQUIRE(it != started.end());
  }
}

TEST_CASE("imap: delivers every result before the failing item, then throws its type",
          "[imap][errors]") {
  watchdog guard{"imap: delivers every result before the failing item"};
  for_each_policy([](auto policy) {
    for (std::size_t chunksize : {std::size_t{0}, std::size_t{1}, std::size_t{8}}) {
      CAPTURE(chunksize);
      std::vector<int> got;
      int caught = -1;
      try {
        for (int& v : parallel::imap(
                 policy,
                 [](int x) {
                   if (x >= failing) throw item_failed{x};
                   return triple_plus_one(x);
                 },
                 numbers(200), parallel::options{.chunksize = chunksize})) {
          got.push_back(v);
        }
      } catch (const item_failed& e) {
        caught = e.index;
      }
      REQUIRE(caught == failing);
      REQUIRE(got.size() == static_cast<std::size_t>(failing));
      for (int i = 0; i < failing; ++i)
        REQUIRE(got[static_cast<std::size_t>(i)] == triple_plus_one(i));
    }
  });
}

// Single-pass inputs as a user writes them (test_support.hpp has the checks; the process
// backends run the same ones in test_process_single_pass.cpp).
TEST_CASE("imap: a move-only input iterator (std::views::istream) is read once, in order",
          "[imap]") {
  watchdog guard{"imap: a move-only input iterator"};
  for_each_policy([](auto policy) {
    test_support::check_istream(test_support::imap_on(policy, triple_plus_one), triple_plus_one);
  });
  INFO("policy: thread_pool{2}");
  parallel::thread_pool pool{2};
  test_support::check_istream(test_support::imap_on_pool(pool, triple_plus_one), triple_plus_one);
}

TEST_CASE("imap: at max_in_flight = 1 the input produces item k + 1 only after result k is taken",
          "[imap]") {
  watchdog guard{"imap: max_in_flight = 1 is lockstep"};
  auto index_of = [](int y) { return (y - 1) / 3; };
  for_each_policy([&](auto policy) {
    test_support::check_lockstep(test_support::imap_on(policy, triple_plus_one), index_of);
  });
  INFO("policy: thread_pool{2}");
  parallel::thread_pool pool{2};
  test_support::check_lockstep(test_support::imap_on_pool(pool, triple_plus_one), index_of);
}

TEST_CASE("imap: an input that throws part-way delivers every result before it, then throws",
          "[imap][errors]") {
  watchdog guard{"imap: an input that throws part-way"};
  for_each_policy([](auto policy) {
    test_support::check_input_breaks(test_support::imap_on(policy, triple_plus_one),
                                     triple_plus_one);
  });
  INFO("policy: thread_pool{2}");
  parallel::thread_pool pool{2};
  test_support::check_input_breaks(test_support::imap_on_pool(pool, triple_plus_one),
                                   triple_plus_one);
}

TEST_CASE("imap: move-only and non-default-constructible results", "[imap]") {
  watchdog guard{"imap: move-only and non-default-constructible results"};
  for_each_policy([](auto policy) {
    std::vector<std::unique_ptr<int>> owned;
    for (auto& p : parallel::imap(
             policy, [](int x) { return std::make_unique<int>(x); }, numbers(300))) {
      owned.push_back(std::move(p));
    }
    REQUIRE(owned.size() == 300);
    for (std::size_t i = 0; i < owned.size(); ++i) {
      REQUIRE(owned[i] != nullptr);
      REQUIRE(*owned[i] == static_cast<int>(i));
    }
    std::vector<int> values;
    for (auto& r : parallel::imap(
             policy, [](int x) { return no_default{x * 2}; }, numbers(50))) {
      values.push_back(r.value);
    }
    REQUIRE(values.size() == 50);
    REQUIRE(values.back() == 98);
  });
}

TEST_CASE("imap_unordered: yields every result exactly once", "[imap]") {
  watchdog guard{"imap_unordered: yields every result exactly once"};
  const auto uneven = [](int x) {
    // Varying costs so that completion order can differ from input order.
    std::this_thread::sleep_for(std::chrono::milliseconds{(x * 7) % 5});
    return triple_plus_one(x);
  };
  for_each_policy([&](auto policy) {
    for (int n : {0, 1, 60}) {
      CAPTURE(n);
      std::vector<int> got = collect(parallel::imap_unordered(policy, uneven, numbers(n)));
      std::sort(got.begin(), got.end());
      std::vector<int> expected;
      for (int i = 0; i < n; ++i) expected.push_back(triple_plus_one(i));
      REQUIRE(got == expected);
    }
    std::list<int> list_items{5, 3, 9, 1};
    std::vector<int> got = collect(
        parallel::imap_unordered(policy, uneven, list_items, parallel::options{.chunksize = 1}));
    std::sort(got.begin(), got.end());
    REQUIRE(got == std::vector<int>{4, 10, 16, 28});
  });
  parallel::thread_pool pool{2};
  std::vector<int> got = collect(pool.imap_unordered(uneven, numbers(40), {.max_in_flight = 8}));
  std::sort(got.begin(), got.end());
  REQUIRE(got == collect(parallel::imap(parallel::sequential{}, triple_plus_one, numbers(40))));
}

TEST_CASE("imap_unordered: works on an unbounded view and stops at break", "[imap]") {
  watchdog guard{"imap_unordered: works on an unbounded view"};
  for_each_policy([](auto policy) {
    std::set<int> seen;
    for (int& v : parallel::imap_unordered(policy, triple_plus_one, std::views::iota(0))) {
      REQUIRE(v % 3 == 1);
      REQUIRE(seen.insert(v).second);
      if (seen.size() == 50) break;
    }
    REQUIRE(seen.size() == 50);
  });
}

TEST_CASE("imap_unordered: an exception reaches the caller with its own type", "[imap][errors]") {
  watchdog guard{"imap_unordered: an exception reaches the caller"};
  for_each_policy([](auto policy) {
    std::set<int> seen;
    int caught = -1;
    try {
      for (int& v : parallel::imap_unordered(
               policy,
               [](int x) {
                 if (x == 30) throw item_failed{x};
                 return x;
               },
               numbers(100))) {
        REQUIRE(seen.insert(v).second);
      }
    } catch (const item_failed& e) {
      caught = e.index;
    }
    REQUIRE(caught == 30);
    REQUIRE(seen.count(30) == 0);
  });
}

TEST_CASE("imap: f returning void yields nothing, and the loop ends after every item ran",
          "[imap][void]") {
  watchdog guard{"imap: void f"};
  for_each_policy([](auto policy) {
    std::vector<std::atomic<int>> hits(500);
    const auto hit = [&hits](int x) { hits[static_cast<std::size_t>(x)].fetch_add(1); };
    int yielded = 0;
    for (auto&& nothing : parallel::imap(policy, hit, numbers(500))) {
      (void)nothing;
      ++yielded;
    }
    for (auto&& nothing : parallel::imap_unordered(policy, hit, numbers(500))) {
      (void)nothing;
      ++yielded;
    }
    REQUIRE(yielded == 0);
    for (auto& h : hits) REQUIRE(h.load() == 2);
    // The first exception of a task is thrown from the loop's start.
    bool caught = false;
    try {
      for (auto&& nothing : parallel::imap(
               policy,
               [](int x) {
                 if (x == failing) throw item_failed{x};
               },
               numbers(100)))
        (void)nothing;
    } catch (const item_failed& e) {
      caught = e.index == failing;
    }
    REQUIRE(caught);
  });
  std::atomic<int> count{0};
  parallel::thread_pool pool{2};
  for (auto&& nothing : pool.imap([&count](int) { ++count; }, numbers(100))) (void)nothing;
  for (auto&& nothing : pool.imap_unordered([&count](int) { ++count; }, numbers(100)))
    (void)nothing;
  REQUIRE(count == 200);
}
