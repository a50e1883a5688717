// parallel::map and parallel::starmap (map.hpp) on sequential, threads and thread_pool:
// results equal the plain loop for every kind of input range, inputs are read in place,
// results may be move-only, chunksize is honoured and f's exceptions keep their type; f may
// return void (map then returns void); a result vector of several MiB is huge pages throughout
// (Linux).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <parallel/parallel.hpp>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {

using test_support::for_each_policy;
using test_support::no_default;
using test_support::single_pass;

int triple_plus_one(int x) { return x * 3 + 1; }

std::vector<int> numbers(int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(i);
  return out;
}

template <class Range>
std::vector<int> loop_triple_plus_one(Range&& items) {
  std::vector<int> out;
  for (auto&& x : items) out.push_back(triple_plus_one(x));
  return out;
}

/// Counts every copy and move of itself, to prove an input is read in place.
struct copy_counted {
  explicit copy_counted(int v) : value{v} {}
  copy_counted(const copy_counted& other) : value{other.value} { ++copies; }
  copy_counted(copy_counted&& other) noexcept : value{other.value} { ++copies; }
  copy_counted& operator=(const copy_counted& other) {
    value = other.value;
    ++copies;
    return *this;
  }
  copy_counted& operator=(copy_counted&& other) noexcept {
    value = other.value;
    ++copies;
    return *this;
  }
  ~copy_counted() = default;

  int value;
  inline static std::atomic<int> copies{0};
};

/// Thrown by f: deliberately not derived from std::exception, so only its own type can catch it.
struct item_failed {
  int index;
};

}  // namespace

TEST_CASE("map: vector input gives the plain loop's results", "[map]") {
  for_each_policy([](auto policy) {
    for (int n : {0, 1, 2, 3, 100, 1000, 10007}) {
      CAPTURE(n);
      const std::vector<int> items = numbers(n);
      REQUIRE(parallel::map(policy, triple_plus_one, items) == loop_triple_plus_one(items));
    }
  });
  // Without a policy, map runs on threads{}.
  const std::vector<int> items = numbers(5000);
  REQUIRE(parallel::map(triple_plus_one, items) == loop_triple_plus_one(items));
}

TEST_CASE("map: std::list input (not random access)", "[map]") {
  for_each_policy([](auto policy) {
    for (int n : {0, 1, 7, 5000}) {
      CAPTURE(n);
      std::list<int> items;
      for (int i = 0; i < n; ++i) items.push_back(i * 2 - 7);
      REQUIRE(parallel::map(policy, triple_plus_one, items) == loop_triple_plus_one(items));
    }
  });
  std::list<std::string> words{"a", "bb", "ccc", "", "eeeee"};
  const auto lengths = parallel::map([](const std::string& s) { return s.size(); }, words);
  REQUIRE(lengths == std::vector<std::size_t>{1, 2, 3, 0, 5});
}

TEST_CASE("map: iota | transform view", "[map]") {
  for_each_policy([](auto policy) {
    for (int n : {0, 1, 999, 20000}) {
      CAPTURE(n);
      auto items = std::views::iota(0, n) | std::views::transform([](int i) { return i * i % 97; });
      REQUIRE(parallel::map(policy, triple_plus_one, items) == loop_triple_plus_one(items));
    }
  });
}

TEST_CASE("map: single-pass input range (generator-like)", "[map]") {
  for_each_policy([](auto policy) {
    for (int n : {0, 1, 2, 4321}) {
      CAPTURE(n);
      single_pass items{n};
      REQUIRE(parallel::map(policy, triple_plus_one, items) == loop_triple_plus_one(numbers(n)));
    }
  });
}

TEST_CASE("map: one million items", "[map]") {
  const std::vector<int> items = numbers(1'000'000);
  const std::vector<int> expected = loop_triple_plus_one(items);
  REQUIRE(parallel::map(parallel::threads{}, triple_plus_one, items) == expected);
  REQUIRE(parallel::map(parallel::sequential{}, triple_plus_one, items) == expected);
  REQUIRE(parallel::map(triple_plus_one, std::views::iota(0, 1'000'000)) == expected);
}

TEST_CASE("map: a temporary input range", "[map]") {
  REQUIRE(parallel::map(triple_plus_one, std::vector<int>{1, 2, 3}) == std::vector<int>{4, 7, 10});
  REQUIRE(parallel::map(parallel::sequential{}, triple_plus_one, std::list<int>{5}) ==
          std::vector<int>{16});
}

TEST_CASE("map: random-access input is read in place, never copied", "[map]") {
  std::vector<copy_counted> items;
  items.reserve(20000);
  for (int i = 0; i < 20000; ++i) items.emplace_back(i);
  const auto twice = [](const copy_counted& c) { return c.value * 2; };

  for_each_policy([&](auto policy) {
    copy_counted::copies = 0;
    const std::vector<int> out = parallel::map(policy, twice, items);
    REQUIRE(copy_counted::copies == 0);
    REQUIRE(out.size() == items.size());
    for (std::size_t i = 0; i < out.size(); ++i) REQUIRE(out[i] == items[i].value * 2);
  });

  parallel::thread_pool pool{2};
  copy_counted::copies = 0;
  const auto out = pool.map(twice, items, parallel::options{.chunksize = 3});
  REQUIRE(copy_counted::copies == 0);
  REQUIRE(out.size() == items.size());
  REQUIRE(out.back() == 2 * 19999);
}

TEST_CASE("map: move-only results", "[map]") {
  for_each_policy([](auto policy) {
    const std::vector<int> items = numbers(3000);
    std::vector<std::unique_ptr<int>> out = parallel::map(
        policy, [](int x) { return std::make_unique<int>(x + 1); }, items);
    REQUIRE(out.size() == items.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      REQUIRE(out[i] != nullptr);
      REQUIRE(*out[i] == items[i] + 1);
    }
  });
}

TEST_CASE("map: results without a default constructor", "[map]") {
  for_each_policy([](auto policy) {
    std::list<int> items{4, 8, 15, 16, 23, 42};
    std::vector<no_default> out = parallel::map(
        policy, [](int x) { return no_default{-x}; }, items);
    REQUIRE(out.size() == 6);
    auto it = items.begin();
    for (const no_default& r : out) REQUIRE(r.value == -*it++);
  });
}

TEST_CASE("map: bool results are right although std::vector<bool> packs bits", "[map]") {
  // Adjacent results share a word of std::vector<bool>: writing them from several threads
  // at once would lose bits.
  const std::vector<int> items = numbers(20000);
  std::vector<bool> expected;
  for (int x : items) expected.push_back(x % 3 == 0);
  parallel::thread_pool pool{2};
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{3}, std::size_t{0}}) {
    CAPTURE(chunksize);
    const auto out = pool.map([](int x) { return x % 3 == 0; }, items,
                              parallel::options{.chunksize = chunksize});
    REQUIRE(out == expected);
  }
}

TEST_CASE("map: the chunksize option keeps results right", "[map]") {
  constexpr int n = 1000;
  const std::vector<int> items = numbers(n);
  const std::vector<int> expected = loop_triple_plus_one(items);
  parallel::thread_pool pool{2};
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{7}, std::size_t{n + 5}}) {
    CAPTURE(chunksize);
    const parallel::options opts{.chunksize = chunksize};
    REQUIRE(parallel::map(parallel::threads{}, triple_plus_one, items, opts) == expected);
    REQUIRE(parallel::map(parallel::sequential{}, triple_plus_one, items, opts) == expected);
    REQUIRE(pool.map(triple_plus_one, items, opts) == expected);
    std::list<int> list_items(items.begin(), items.end());
    REQUIRE(pool.map(triple_plus_one, list_items, opts) == expected);
    single_pass generated{n};
    REQUIRE(pool.map(triple_plus_one, generated, opts) == expected);
  }
}

TEST_CASE("starmap: applies f to each tuple's elements", "[map][starmap]") {
  const auto add = [](int a, int b) { return a + b; };
  for_each_policy([&](auto policy) {
    std::vector<std::tuple<int, int>> pairs;
    for (int i = 0; i < 2000; ++i) pairs.emplace_back(i, 10 * i);
    const std::vector<int> sums = parallel::starmap(policy, add, pairs);
    REQUIRE(sums.size() == pairs.size());
    for (std::size_t i = 0; i < sums.size(); ++i) REQUIRE(sums[i] == 11 * static_cast<int>(i));

    std::list<std::tuple<int, int, int>> triples{{1, 2, 3}, {4, 5, 6}};
    const auto products = parallel::starmap(
        policy, [](int a, int b, int c) { return a * b * c; }, triples);
    REQUIRE(products == std::vector<int>{6, 120});

    const std::vector<std::pair<std::string, int>> repeats{{"ab", 2}, {"x", 0}, {"c", 3}};
    const auto repeated = parallel::starmap(
        policy,
        [](const std::string& s, int times) {
          std::string out;
          for (int i = 0; i < times; ++i) out += s;
          return out;
        },
        repeats);
    REQUIRE(repeated == std::vector<std::string>{"abab", "", "ccc"});

    const std::vector<std::tuple<int, int>> none;
    REQUIRE(parallel::starmap(policy, add, none).empty());
  });

  parallel::thread_pool pool{2};
  const std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  REQUIRE(pool.starmap(add, pairs, parallel::options{.chunksize = 1}) ==
          std::vector<int>{3, 7, 11});
  REQUIRE(parallel::starmap(add, pairs) == std::vector<int>{3, 7, 11});
}

TEST_CASE("starmap: tuples in a random-access range are not copied", "[map][starmap]") {
  std::vector<std::tuple<copy_counted, int>> items;
  items.reserve(5000);
  for (int i = 0; i < 5000; ++i) items.emplace_back(copy_counted{i}, 2);
  for_each_policy([&](auto policy) {
    copy_counted::copies = 0;
    const auto out = parallel::starmap(
        policy, [](const copy_counted& c, int k) { return c.value * k; }, items);
    REQUIRE(copy_counted::copies == 0);
    REQUIRE(out.size() == items.size());
    REQUIRE(out[4999] == 9998);
  });
}

TEST_CASE("map: an exception from f reaches the caller with its own type", "[map][errors]") {
  for_each_policy([](auto policy) {
    for (int k : {0, 1, 500, 999}) {
      CAPTURE(k);
      const std::vector<int> items = numbers(1000);
      int caught = -1;
      try {
        (void)parallel::map(
            policy,
            [k](int x) {
              if (x == k) throw item_failed{x};
              return x;
            },
            items);
      } catch (const item_failed& e) {
        caught = e.index;
      }
      REQUIRE(caught == k);
    }
    // starmap too, with a standard exception type.
    const std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 0}, {5, 6}};
    REQUIRE_THROWS_AS(parallel::starmap(
                          policy,
                          [](int a, int b) {
                            if (b == 0) throw std::domain_error{"division by zero"};
                            return a / b;
                          },
                          pairs),
                      std::domain_error);
  });
}

TEST_CASE(
    "threads: short calls of a function known to be cheap run in the caller as a plain loop: "
    "right results of every type, and the first exception as thrown, the items after it not run",
    "[map][threads][errors]") {
  // Once a call has measured the items (a few ns), calls of a few items run in the caller,
  // unmeasured, as the loop a user would write (all but one in 128, which is timed).
  const parallel::threads two{.workers = 2};
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<std::thread::id> ran(6);
  std::atomic<int> runs = 0;  // a timed call may run items on two threads
  int throw_at = -1;
  auto item = [&](int x) {
    ++runs;
    ran[static_cast<std::size_t>(x)] = std::this_thread::get_id();
    if (x == throw_at) throw item_failed{x};
    return x * 3;
  };
  const std::vector<int> six{0, 1, 2, 3, 4, 5};
  REQUIRE(parallel::map(two, item, six) == std::vector<int>{0, 3, 6, 9, 12, 15});
  int threw = 0;
  for (int call = 0; call < 200; ++call) {
    throw_at = call % 2 == 0 ? -1 : call % 6;
    runs = 0;
    try {
      const auto got = parallel::map(two, item, six);
      REQUIRE(got == std::vector<int>{0, 3, 6, 9, 12, 15});
      REQUIRE(throw_at == -1);
      REQUIRE(runs == 6);
    } catch (const item_failed& e) {
      ++threw;
      REQUIRE(e.index == throw_at);
      // In the caller, in order: the items after the one that threw never ran (a timed call
      // may have shared its items with the pool, which starts them in any order).
      if (std::count(ran.begin(), ran.end(), caller) == 6) REQUIRE(runs == throw_at + 1);
    }
  }
  CHECK(threw == 100);
  // The caller ran them: no item went to another thread in the last call.
  CHECK(std::count(ran.begin(), ran.end(), caller) == 6);

  // Results that are not ints: move-only, without a default constructor, packed bools.
  auto boxed = [](int x) { return std::make_unique<int>(x); };
  auto flags = [](int x) { return x % 2 == 0; };
  for (int call = 0; call < 100; ++call) {
    const auto boxes = parallel::map(two, boxed, six);
    REQUIRE(boxes.size() == 6);
    for (int i = 0; i < 6; ++i) REQUIRE(*boxes[static_cast<std::size_t>(i)] == i);
    REQUIRE(parallel::map(two, flags, six) ==
            std::vector<bool>{true, false, true, false, true, false});
  }

  // With a progress callback: (6, 6) once per call, after the items ran (a timed call that
  // shared its items may report more often, from any thread, and ends with (6, 6) too).
  int plain = 0;
  throw_at = -1;
  for (int call = 0; call < 100; ++call) {
    std::mutex guard;
    std::vector<std::pair<std::size_t, std::size_t>> reports;
    int runs_at_last_report = 0;
    runs = 0;
    const auto got =
        parallel::map(two, item, six, {.progress = [&](std::size_t done, std::size_t total) {
                        const std::lock_guard lock(guard);
                        reports.emplace_back(done, total);
                        runs_at_last_report = runs;
                      }});
    REQUIRE(got == std::vector<int>{0, 3, 6, 9, 12, 15});
    REQUIRE(!reports.empty());
    REQUIRE(reports.back() == std::pair<std::size_t, std::size_t>{6, 6});
    REQUIRE(runs_at_last_report == 6);
    if (std::count(ran.begin(), ran.end(), caller) == 6) {
      ++plain;
      REQUIRE(reports.size() == 1);
    }
  }
  CHECK(plain >= 90);

  // A const function object: the short-call check reads the cost its calls learned (one type
  // for both), so all but the timed calls are plain loops.
  // Calls first, until the estimate settles: a lower cost is believed at once, and one call's
  // measure may be high (in the clang-asan build, the decisions after a single call were all
  // `no`: 6 items known to take over 2 us).
  const auto const_item = [](int x) { return x * 3; };
  for (int call = 0; call < 100; ++call)
    REQUIRE(parallel::map(two, const_item, six) == std::vector<int>{0, 3, 6, 9, 12, 15});
  int in_caller = 0;
  for (int call = 0; call < 64; ++call) {
    const auto plain = parallel::detail::threads_map_in_caller(const_item, six, {});
    CHECK(plain != parallel::detail::plain_loop::ask);
    if (plain == parallel::detail::plain_loop::yes) ++in_caller;
  }
  CHECK(in_caller >= 60);
}

TEST_CASE(
    "threads: a map of one item runs in the caller as a plain loop, whatever the item costs: its "
    "result, its exception, progress (1, 1), a void f; a timeout is still refused",
    "[map][threads][errors]") {
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran;
  auto item = [&](int x) {
    ran = std::this_thread::get_id();
    if (x < 0) throw item_failed{x};
    std::this_thread::sleep_for(std::chrono::milliseconds(x));
    return x + 1;
  };
#if defined(__linux__)
  // No pool is started for it: a size no other test of this file asks for, and no thread more.
  const auto threads_now = [] {
    const auto tasks = std::filesystem::directory_iterator("/proc/self/task");
    return std::distance(std::filesystem::begin(tasks), std::filesystem::end(tasks));
  };
  const auto before = threads_now();
  REQUIRE(parallel::map(parallel::threads{.workers = 7}, item, std::vector<int>{2}) ==
          std::vector<int>{3});
  CHECK(threads_now() == before);
#endif
  for (const parallel::threads policy : {parallel::threads{}, parallel::threads{.workers = 3}}) {
    for (int call = 0; call < 100; ++call) {  // some of them timed turns, were they short
      ran = {};
      REQUIRE(parallel::map(policy, item, std::vector<int>{0}) == std::vector<int>{1});
      REQUIRE(ran == caller);
    }
    ran = {};
    REQUIRE(parallel::map(policy, item, std::array<int, 1>{20}) == std::vector<int>{21});
    CHECK(ran == caller);
    try {
      (void)parallel::map(policy, item, std::vector<int>{-4});
      FAIL("the item's exception did not reach the caller");
    } catch (const item_failed& e) {
      CHECK(e.index == -4);
      CHECK(ran == caller);
    }
    std::vector<std::pair<std::size_t, std::size_t>> reports;
    const auto got = parallel::map(policy, item, std::vector<int>{1},
                                   {.progress = [&](std::size_t done, std::size_t total) {
                                     reports.emplace_back(done, total);
                                   }});
    CHECK(got == std::vector<int>{2});
    CHECK(reports == std::vector<std::pair<std::size_t, std::size_t>>{{1, 1}});
    int calls = 0;
    parallel::map(
        policy, [&](int) { ++calls; }, std::vector<int>{7});
    CHECK(calls == 1);
    CHECK_THROWS_WITH(
        parallel::map(policy, item, std::vector<int>{0}, {.timeout = std::chrono::seconds(5)}),
        Catch::Contains("options.timeout (5000 ms) is not supported on threads"));
  }
}

namespace {
// One item: a sleep of `ms` (0: none), the thread that ran it recorded.
std::mutex ran_on_guard;
std::set<std::thread::id> ran_on;
int nap_and_record(int ms, int x) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  const std::lock_guard lock(ran_on_guard);
  ran_on.insert(std::this_thread::get_id());
  return x;
}
int quick_item(int x) { return nap_and_record(0, x); }
int slow_item(int x) { return nap_and_record(1, x); }
}  // namespace

TEST_CASE(
    "threads: a cost measured for one function does not steer another of the same type "
    "(another capture, another target of a function pointer): a slow call is shared",
    "[map][threads]") {
  // Many calls of a cheap function teach the map that its items take nanoseconds; a call of
  // 100 items of 1 ms of the same type must not then run as a plain loop in the caller.
  const parallel::threads two{.workers = 2};
  const std::vector<int> items = numbers(100);
  const auto shared_slow_call = [&](auto& f) {
    {
      const std::lock_guard lock(ran_on_guard);
      ran_on.clear();
    }
    REQUIRE(parallel::map(two, f, items) == items);
    const std::lock_guard lock(ran_on_guard);
    return ran_on.size();
  };
  SECTION("a lambda, by what it captured") {
    const auto nap = [](int ms) { return [ms](int x) { return nap_and_record(ms, x); }; };
    auto quick = nap(0);
    auto slow = nap(1);
    static_assert(std::is_same_v<decltype(quick), decltype(slow)>);
    for (int round = 0; round < 3; ++round) {
      for (int call = 0; call < 200; ++call) REQUIRE(parallel::map(two, quick, items) == items);
      CHECK(shared_slow_call(slow) >= 2);
    }
  }
  SECTION("a function pointer, by its target") {
    int (*quick)(int) = quick_item;
    int (*slow)(int) = slow_item;
    for (int round = 0; round < 3; ++round) {
      for (int call = 0; call < 200; ++call) REQUIRE(parallel::map(two, quick, items) == items);
      CHECK(shared_slow_call(slow) >= 2);
    }
  }
  SECTION("starmap, through its wrapper") {
    const auto nap = [](int ms) { return [ms](int x, int) { return nap_and_record(ms, x); }; };
    auto quick = nap(0);
    auto slow = nap(1);
    std::vector<std::tuple<int, int>> pairs;
    for (int x : items) pairs.emplace_back(x, 0);
    for (int round = 0; round < 3; ++round) {
      for (int call = 0; call < 200; ++call) REQUIRE(parallel::starmap(two, quick, pairs) == items);
      {
        const std::lock_guard lock(ran_on_guard);
        ran_on.clear();
      }
      REQUIRE(parallel::starmap(two, slow, pairs) == items);
      const std::lock_guard lock(ran_on_guard);
      CHECK(ran_on.size() >= 2);
    }
  }
}

TEST_CASE("map: work not yet started is skipped after an exception", "[map][errors]") {
  constexpr int n = 100'000;
  const std::vector<int> items = numbers(n);
  std::atomic<int> calls{0};
  const auto busy_10us_throw_at_0 = [&calls](int x) {
    calls.fetch_add(1, std::memory_order_relaxed);
    if (x == 0) throw item_failed{0};
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds{10};
    while (std::chrono::steady_clock::now() < until) {
    }
    return x;
  };

  REQUIRE_THROWS_AS(parallel::map(parallel::threads{}, busy_10us_throw_at_0, items), item_failed);
  CHECK(calls.load() < n / 2);

  calls = 0;
  parallel::thread_pool pool{2};
  REQUIRE_THROWS_AS(pool.map(busy_10us_throw_at_0, items, parallel::options{.chunksize = 1}),
                    item_failed);
  CHECK(calls.load() < n / 2);

  // The sequential loop stops exactly at the failing item.
  calls = 0;
  REQUIRE_THROWS_AS(parallel::map(parallel::sequential{}, busy_10us_throw_at_0, items),
                    item_failed);
  CHECK(calls.load() == 1);
}

TEST_CASE("map: the pool is usable after an exception", "[map][errors]") {
  parallel::thread_pool pool{2};
  const std::vector<int> items = numbers(10000);
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    REQUIRE_THROWS_AS(pool.map(
                          [](int x) {
                            if (x % 1000 == 999) throw item_failed{x};
                            return x;
                          },
                          items),
                      item_failed);
    REQUIRE(pool.map(triple_plus_one, items) == loop_triple_plus_one(items));
    REQUIRE(pool.submit([] { return 42; }).get() == 42);
  }
  REQUIRE_THROWS_AS(parallel::map([](int) -> int { throw item_failed{1}; }, items), item_failed);
  REQUIRE(parallel::map(triple_plus_one, items) == loop_triple_plus_one(items));
}

TEST_CASE("map: f returning void runs for every item and map returns void", "[map][void]") {
  for_each_policy([](auto policy) {
    std::vector<std::atomic<int>> hits(1000);
    const auto hit = [&hits](int x) { hits[static_cast<std::size_t>(x)].fetch_add(1); };
    static_assert(std::is_void_v<decltype(parallel::map(policy, hit, numbers(1)))>);
    parallel::map(policy, hit, numbers(1000));
    for (auto& h : hits) REQUIRE(h.load() == 1);
    // From a single-pass input too, and through starmap.
    parallel::map(policy, hit, single_pass{1000});
    std::vector<std::tuple<int, int>> pairs;
    for (int i = 0; i < 1000; ++i) pairs.emplace_back(i, 1);
    parallel::starmap(
        policy, [&hits](int x, int k) { hits[static_cast<std::size_t>(x)] += k; }, pairs);
    for (auto& h : hits) REQUIRE(h.load() == 3);
    // An exception still reaches the caller with its type.
    REQUIRE_THROWS_AS(parallel::map(
                          policy,
                          [](int x) {
                            if (x == 500) throw item_failed{x};
                          },
                          numbers(1000)),
                      item_failed);
  });
  // The pool objects and the policy-less form.
  std::atomic<int> count{0};
  parallel::thread_pool pool{2};
  pool.map([&count](int) { ++count; }, numbers(100));
  pool.starmap([&count](int a, int b) { count += a + b; },
               std::vector<std::tuple<int, int>>{{1, 2}});
  parallel::map([&count](int) { ++count; }, numbers(100));
  REQUIRE(count == 203);
}

TEST_CASE(
    "threads: few items of unknown cost are handed out one at a time, so none waits behind "
    "a slow one while a worker is free",
    "[map][threads]") {
  test_support::watchdog guard("map hand-out", std::chrono::seconds(60));
  // Item 0 blocks until items 1..3 have run (10 s at most). A worker free meanwhile takes them
  // from the shared counter; halving the input blindly left item 1 behind item 0 on one worker.
  std::atomic<int> others_done{0};
  auto item = [&others_done](int x) {
    if (x != 0) {
      others_done.fetch_add(1);
      return true;
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (others_done.load() < 3) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  };
  const auto got =
      parallel::map(parallel::threads{.workers = 2}, item, std::vector<int>{0, 1, 2, 3});
  CHECK(got == std::vector<bool>{true, true, true, true});
}

TEST_CASE(
    "threads: a function whose items were cheap and got slow goes back to the pool, although "
    "short calls of it run in the caller unmeasured",
    "[map][threads]") {
  test_support::watchdog guard("map cost estimate", std::chrono::seconds(120));
  // Calls known to take under 2 us run inline without a clock; one in 128 is timed, and the
  // one after a timed call that measured the items slower. Here the same function's items first
  // cost nothing (its estimate: a few ns), then 300 us each: at worst 127 calls run untimed, the
  // 128th measures the items slower (doubted: one block), the 129th confirms it, and the 130th
  // runs on more than one thread (or the next, if no worker woke in time to take an item).
  bool slow = false;
  std::vector<std::thread::id> ran(8);
  auto item = [&slow, &ran](int x) {
    ran[static_cast<std::size_t>(x)] = std::this_thread::get_id();
    if (slow) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(300);
      while (std::chrono::steady_clock::now() < until) {
      }
    }
    return x;
  };
  const std::vector<int> eight{0, 1, 2, 3, 4, 5, 6, 7};
  const parallel::threads two{.workers = 2};
  for (int call = 0; call < 300; ++call) REQUIRE(parallel::map(two, item, eight) == eight);
  // Cheap and known: the caller ran them all.
  CHECK(std::count(ran.begin(), ran.end(), std::this_thread::get_id()) == 8);

  slow = true;
  int calls = 0;
  bool spread = false;
  while (calls < 200 && !spread) {
    REQUIRE(parallel::map(two, item, eight) == eight);
    ++calls;
    spread = std::any_of(ran.begin(), ran.end(), [&](auto id) { return id != ran[0]; });
  }
  INFO("calls of slow items before one ran on two threads: " << calls);
  CHECK(spread);
  CHECK(calls <= 132);
}

TEST_CASE("threads map: one slow block does not move the item cost estimate, two in a row do",
          "[map][threads]") {
  parallel::detail::item_cost_estimate cost;
  constexpr std::uint64_t f = 7;  // callable_identity of the function measured
  CHECK(cost.ns(f) == 0);
  cost.learn(4, f);
  CHECK(cost.ns(f) == 4);  // the first measure is the estimate
  cost.learn(6, f);
  CHECK(cost.ns(f) == 4);  // within 2x: left as it is
  cost.learn(120, f);
  CHECK(cost.ns(f) == 4);  // a block 30x slower (preempted?): doubted
  cost.learn(5, f);
  CHECK(cost.ns(f) == 4);  // the next block says no: the doubt is gone
  cost.learn(90, f);
  CHECK(cost.ns(f) == 4);
  cost.learn(100, f);
  CHECK(cost.ns(f) == 100);  // confirmed by the next block: the items did get slower
  cost.learn(3, f);
  CHECK(cost.ns(f) == 3);  // a faster measure is believed at once
  cost.learn(300, f);
  cost.learn(1, f);  // a faster block after a doubted one: taken, the doubt cleared
  CHECK(cost.ns(f) == 1);
  cost.learn(50, f);
  CHECK(cost.ns(f) == 1);  // doubted afresh, not confirmed by the block before

  // Another function of the same type (another capture): its cost is not known yet, and its
  // first measure replaces the estimate; the first function's cost is then unknown again.
  constexpr std::uint64_t g = 9;
  CHECK(cost.ns(g) == 0);
  cost.learn(5000, g);
  CHECK(cost.ns(g) == 5000);
  CHECK(cost.ns(f) == 0);
  cost.learn(2, f);
  CHECK(cost.ns(f) == 2);
  CHECK(cost.ns(g) == 0);
  cost.learn(2, 0);  // std::function: never known
  CHECK(cost.ns(0) == 0);
  CHECK(cost.ns(f) == 2);
}

TEST_CASE("threads map: results stay right when f's items turn slower from one call to the next",
          "[map][threads]") {
  // One f whose items cost ~nothing in the first calls and a sleep later: the estimate learned
  // first is wrong for the later calls, which doubt their first slow block and believe the
  // next; every result comes back, in order.
  std::atomic<bool> slow{false};
  auto f = [&slow](int x) {
    if (slow.load(std::memory_order_relaxed))
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    return x * 2;
  };
  std::vector<int> xs(1000);
  for (int i = 0; i < 1000; ++i) xs[static_cast<std::size_t>(i)] = i;
  for (int call = 0; call < 6; ++call) {
    if (call == 3) slow = true;
    const auto out = parallel::map(parallel::threads{}, f, xs);
    REQUIRE(out.size() == xs.size());
    for (std::size_t i = 0; i < xs.size(); i += 97) REQUIRE(out[i] == xs[i] * 2);
    REQUIRE(out.back() == xs.back() * 2);
  }
}

TEST_CASE(
    "threads map: results of 256 KiB to 1 MiB, their pages touched by the caller and idle "
    "workers first, are all there",
    "[map][threads]") {
  // 256 KiB, 800 KB and 1 MiB of results (mapped in ahead, their pages touched by the caller and
  // the pool's idle workers together before the vector is value-initialised and the items run),
  // and 2.4 MB (huge pages: value-initialised by the caller alone). A touch is a zero byte at
  // each 4 KiB, the low byte of a result here: one that landed after the items ran (a helper
  // still touching) would leave an even result, where every result is odd.
  const auto twice = [](std::int64_t x) { return 2 * x + 1; };
  for (const std::size_t n : {std::size_t{32'768}, std::size_t{100'000}, std::size_t{131'072},
                              std::size_t{131'073}, std::size_t{300'000}}) {
    CAPTURE(n);
    std::vector<std::int64_t> xs(n);
    for (std::size_t i = 0; i < n; ++i) xs[i] = static_cast<std::int64_t>(i);
    const auto check = [&](const std::vector<std::int64_t>& out) {
      REQUIRE(out.size() == n);
      for (std::size_t i = 0; i < n; ++i)
        if (out[i] != 2 * xs[i] + 1) FAIL("result " << i << " is " << out[i]);
    };
    check(parallel::map(parallel::threads{}, twice, xs));
    parallel::thread_pool pool(3);  // the caller and two helpers, on however many cores
    check(pool.map(twice, xs));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // its workers asleep
    check(pool.map(twice, xs));
    // Results without a default constructor go through raw storage, not touched first.
    const auto wrapped = parallel::map(
        parallel::threads{}, [](std::int64_t x) { return no_default(static_cast<int>(x)); }, xs);
    REQUIRE(wrapped.size() == n);
    CHECK(wrapped.front().value == 0);
    CHECK(wrapped.back().value == static_cast<int>(n) - 1);
    // A map inside a worker's task (its results a share of an outer call) opens its own slots
    // alone.
    const auto sums = parallel::map(
        parallel::threads{},
        [&](int k) {
          const auto inner = parallel::map(parallel::threads{}, twice, xs);
          return inner[static_cast<std::size_t>(k)];
        },
        std::vector<int>{0, 1, 2, 3});
    CHECK(sums == std::vector<std::int64_t>{1, 3, 5, 7});
  }
}

TEST_CASE(
    "threads map: large results on a pool whose workers are all busy are opened by the "
    "caller alone, not left waiting for a worker",
    "[map][threads]") {
  // Both workers hold until the map has returned: a map that waited for a worker to touch its
  // result pages would never return. Its two items run in the caller (chunksize 2).
  parallel::thread_pool pool(2);
  std::atomic<int> running{0};
  std::atomic<bool> release{false};
  auto hold = [&] {
    running.fetch_add(1);
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return 0;
  };
  auto first = pool.submit(hold);
  auto second = pool.submit(hold);
  while (running.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  using block = std::array<char, 400'000>;  // 800 KB of results
  const auto out = pool.map(
      [](int x) {
        block b{};
        b.front() = static_cast<char>(x);
        b.back() = static_cast<char>(x + 1);
        return b;
      },
      std::vector<int>{5, 7}, parallel::options{.chunksize = 2});
  release = true;
  CHECK(first.get() == 0);
  CHECK(second.get() == 0);
  REQUIRE(out.size() == 2);
  CHECK(out[0].front() == 5);
  CHECK(out[1].back() == 8);
}

namespace {

/// Busy for `us` microseconds (not a sleep: the map's cost estimate takes it for CPU work).
void busy_for_us(int us) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < until) {
  }
}

}  // namespace

/// Maps `item` over 0 .. n-1 on `pool` until one call ran some items in this thread and one ran
/// them on two threads (at most `calls` calls); every call must run on two threads at most.
/// `ran[x]` is where item x last ran (the item writes it).
template <class F>
void check_shared_with_caller(parallel::thread_pool& pool, F item, int n,
                              const std::vector<std::thread::id>& ran, int calls) {
  const auto xs = numbers(n);
  bool caller_ran = false;
  bool spread = false;
  for (int call = 0; call < calls && !(caller_ran && spread); ++call) {
    REQUIRE(pool.map(item, xs) == xs);
    std::vector<std::thread::id> threads = ran;
    std::sort(threads.begin(), threads.end());
    threads.erase(std::unique(threads.begin(), threads.end()), threads.end());
    REQUIRE(threads.size() <= 2);
    caller_ran = caller_ran || std::count(ran.begin(), ran.end(), std::this_thread::get_id()) > 0;
    spread = spread || threads.size() == 2;
  }
  CHECK(caller_ran);
  CHECK(spread);
}

TEST_CASE(
    "threads map: the caller runs items of a call it shares with the pool, beside at most "
    "workers - 1 of the pool's threads",
    "[map][threads]") {
  test_support::watchdog guard("map shared with the pool", std::chrono::seconds(120));
  parallel::thread_pool pool(2);
  std::vector<std::thread::id> ran(200);
  // 200 items of ~10 us, known after the first call: each call is shared at once between the
  // caller and one of the pool's two workers, so it runs on two threads at most.
  check_shared_with_caller(
      pool,
      [&ran](int x) {
        busy_for_us(10);
        ran[static_cast<std::size_t>(x)] = std::this_thread::get_id();
        return x;
      },
      200, ran, 200);
  // Long items (300 us, handed out one at a time) are shared the same way.
  std::vector<std::thread::id> long_ran(8);
  check_shared_with_caller(
      pool,
      [&long_ran](int x) {
        busy_for_us(300);
        long_ran[static_cast<std::size_t>(x)] = std::this_thread::get_id();
        return x;
      },
      8, long_ran, 100);
}

TEST_CASE(
    "threads map: a call shared with a pool whose workers are all busy runs in the caller, "
    "and the helper it queued is not waited for",
    "[map][threads]") {
  test_support::watchdog guard("map shared with a busy pool", std::chrono::seconds(120));
  parallel::thread_pool pool(2);
  // Items of ~5 us (far from the 100 us from which items are handed out one at a time), 2 ms a
  // call: once measured, a call is shared at once. The last warm-up call lowers an estimate that
  // a preempted block may have raised.
  auto item = [](int x) {
    busy_for_us(5);
    return x * 2;
  };
  const auto xs = numbers(400);
  std::vector<int> want(400);
  for (int i = 0; i < 400; ++i) want[static_cast<std::size_t>(i)] = 2 * i;
  for (int warm = 0; warm < 3; ++warm) REQUIRE(pool.map(item, xs) == want);
  // Both workers hold until the map has returned, or 10 s: a caller that waited for its queued
  // helper would return only when they gave up.
  std::atomic<int> running{0};
  std::atomic<bool> release{false};
  std::atomic<bool> gave_up{false};
  auto hold = [&] {
    running.fetch_add(1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!release.load()) {
      if (std::chrono::steady_clock::now() > until) {
        gave_up = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return 0;
  };
  auto first = pool.submit(hold);
  auto second = pool.submit(hold);
  while (running.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(pool.map(item, xs) == want);
  CHECK_FALSE(gave_up.load());  // it returned while both workers were held
  release = true;
  CHECK(first.get() == 0);
  CHECK(second.get() == 0);
  // The abandoned helper ran (and freed itself) once a worker was free; the pool goes on.
  CHECK(pool.map(item, xs) == want);
}

#if defined(__linux__) && defined(__GLIBC__)
namespace {

constexpr std::size_t two_mib = std::size_t{2} << 20;

/// The transparent-huge-page mode in use ("always", "madvise", "never"), or "" when unknown.
std::string huge_page_mode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(in, line);
  const auto open = line.find('[');
  const auto close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return line.substr(open + 1, close - open - 1);
}

/// Whether this kernel places an anonymous mapping of whole 2 MiB pages on a 2 MiB boundary
/// (Linux 6.7 on), probed with a mapping of its own.
bool kernel_aligns_huge_mappings() {
  void* p =
      ::mmap(nullptr, 2 * two_mib, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % two_mib == 0;
  ::munmap(p, 2 * two_mib);
  return aligned;
}

/// How often the kernel had no huge page to give where one was asked for (/proc/vmstat).
long long huge_page_refusals() {
  std::ifstream in("/proc/vmstat");
  std::string name;
  long long value = 0;
  long long refusals = 0;
  while (in >> name >> value)
    if (name == "thp_fault_fallback" || name == "thp_collapse_alloc_failed") refusals += value;
  return refusals;
}

/// The AnonHugePages (bytes) of the mapping that holds `p`, from /proc/self/smaps; -1 if none.
long long huge_bytes_of_mapping(const void* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    std::uintptr_t begin = 0;
    std::uintptr_t end = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " ", &begin, &end) == 2 &&
        line.find(':') > line.find(' ')) {
      inside = begin <= at && at < end;
      continue;
    }
    long long kib = 0;
    if (inside && std::sscanf(line.c_str(), "AnonHugePages: %lld kB", &kib) == 1) return kib * 1024;
  }
  return -1;
}

}  // namespace

TEST_CASE(
    "map: a result vector of several MiB is huge pages from its first byte to its last, "
    "where the system offers them",
    "[map][memory]") {
  if (test_support::under_sanitizer) {
    WARN("a sanitizer's allocator lays blocks out its own way: nothing to check");
    return;
  }
  const std::string mode = huge_page_mode();
  if ((mode != "always" && mode != "madvise") || !kernel_aligns_huge_mappings()) {
    WARN("no transparent huge pages here (mode '" + mode +
         "'), or no kernel alignment of huge mappings: nothing to check");
    return;
  }
  // 40 MB of results: past glibc's largest mmap threshold (32 MiB), so always a mapping of
  // their own, whatever the earlier frees did to the threshold.
  const std::vector<std::uint64_t> items(5'000'000, 7);
  const auto check = [&](const auto& policy) {
    const long long refused_before = huge_page_refusals();
    const auto out = parallel::map(
        policy, [](std::uint64_t x) { return x + 1; }, items);
    REQUIRE(out.size() == items.size());
    CHECK(std::ranges::all_of(out, [](std::uint64_t r) { return r == 8; }));
    if (huge_page_refusals() != refused_before) {
      WARN(
          "the kernel had no huge page free for a while (it fell back to 4 KiB pages): the "
          "layout is not checked this time");
      return;
    }
    // Every whole 2 MiB of the results, the first too (malloc writes its header there before
    // the library can ask for huge pages: left alone, it faults in 4 KiB at a time).
    const auto bytes = static_cast<long long>(out.size() * sizeof(std::uint64_t));
    CHECK(huge_bytes_of_mapping(out.data()) >=
          bytes / static_cast<long long>(two_mib) * static_cast<long long>(two_mib));
  };
  check(parallel::sequential{});
  check(parallel::threads{});
}
#endif
