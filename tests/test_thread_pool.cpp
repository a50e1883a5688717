// parallel::thread_pool (thread_pool.hpp): nested maps never deadlock, even on one worker and
// even when the caller holds a lock; an idle pool sleeps; a forked child gets a working pool;
// pools come and go; several threads may use one pool at once.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <parallel/parallel.hpp>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "test_support.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace {

using test_support::under_thread_sanitizer;
using test_support::watchdog;

using namespace std::chrono_literals;

std::vector<int> numbers(int n) {
  std::vector<int> out(static_cast<std::size_t>(n));
  std::iota(out.begin(), out.end(), 0);
  return out;
}

long sum(const std::vector<long>& values) {
  return std::accumulate(values.begin(), values.end(), 0L);
}

/// chunksize 1 so that every level really becomes tasks instead of running inline.
const parallel::options one_per_task{.chunksize = 1};

/// sum over i < 4, j < 4, k < 16 of (i * 100 + j * 10 + k), as three levels of pool.map.
template <class Map>
long three_levels(Map&& map_on_pool) {
  const auto inner = [](int base) { return [base](int k) { return static_cast<long>(base + k); }; };
  const auto middle = [&](int i) {
    return [&, i](int j) { return sum(map_on_pool(inner(i * 100 + j * 10), numbers(16))); };
  };
  return sum(
      map_on_pool([&](int i) { return sum(map_on_pool(middle(i), numbers(4))); }, numbers(4)));
}

constexpr long three_levels_expected = [] {
  long total = 0;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 16; ++k) total += i * 100 + j * 10 + k;
  return total;
}();

/// A small amount of real work, so that idle workers have time to steal.
long spin_20us(int k) {
  const auto until = std::chrono::steady_clock::now() + 20us;
  while (std::chrono::steady_clock::now() < until) {
  }
  return k;
}

/// How many outer items the current thread is inside of (see the isolation test).
thread_local int outer_items_running_here = 0;

double process_cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

}  // namespace

TEST_CASE("thread_pool: map in map in map gives the right results", "[thread_pool]") {
  watchdog guard{"thread_pool: map in map in map"};
  for (int workers : {1, 2}) {
    CAPTURE(workers);
    parallel::thread_pool pool{workers};
    REQUIRE(three_levels([&pool](auto f, const std::vector<int>& items) {
              return pool.map(f, items, one_per_task);
            }) == three_levels_expected);
    REQUIRE(three_levels([workers](auto f, const std::vector<int>& items) {
              return parallel::map(parallel::threads{.workers = workers}, f, items, one_per_task);
            }) == three_levels_expected);
    // Automatic chunking too.
    REQUIRE(three_levels([&pool](auto f, const std::vector<int>& items) {
              return pool.map(f, items);
            }) == three_levels_expected);
  }
}

TEST_CASE("thread_pool: a nested map while holding a mutex does not deadlock", "[thread_pool]") {
  watchdog guard{"thread_pool: nested map while holding a mutex"};
  for (int workers : {1, 2, 4}) {
    CAPTURE(workers);
    parallel::thread_pool pool{workers};
    std::mutex shared;
    // Each outer task runs its inner map while holding `shared`. A thread that, while waiting
    // for its inner map, picked up another outer task would lock `shared` twice.
    const std::vector<long> sums = pool.map(
        [&](int i) {
          std::lock_guard lock{shared};
          return sum(pool.map([i](int k) { return static_cast<long>(i) * 1000 + spin_20us(k); },
                              numbers(200), one_per_task));
        },
        numbers(8), one_per_task);
    REQUIRE(sums.size() == 8);
    for (std::size_t i = 0; i < sums.size(); ++i) {
      REQUIRE(sums[i] == static_cast<long>(i) * 1000 * 200 + 199 * 200 / 2);
    }
  }
}

TEST_CASE("thread_pool: a thread waiting for its nested map runs none of the outer items",
          "[thread_pool]") {
  // The condition behind the mutex test above, observed without deadlocking: an outer item
  // that started on a thread already inside an outer item would have locked the mutex twice.
  watchdog guard{"thread_pool: isolation of nested maps"};
  for (int workers : {2, 4, 2, 4, 2, 4}) {  // repeated: the steals that reveal it are by chance
    CAPTURE(workers);
    parallel::thread_pool pool{workers};
    std::atomic<int> reentered{0};
    const std::vector<long> sums = pool.map(
        [&](int i) {
          if (outer_items_running_here != 0) reentered.fetch_add(1);
          ++outer_items_running_here;
          const long inner =
              sum(pool.map([i](int k) { return spin_20us(k) + i; }, numbers(32), one_per_task));
          --outer_items_running_here;
          return inner;
        },
        numbers(64), one_per_task);
    REQUIRE(sums.size() == 64);
    REQUIRE(sums[63] == 31 * 32 / 2 + 63 * 32);
    REQUIRE(reentered.load() == 0);
  }
}

TEST_CASE("thread_pool: an idle pool uses no CPU", "[thread_pool]") {
  watchdog guard{"thread_pool: an idle pool uses no CPU"};
  parallel::thread_pool pool{2};
  const std::vector<int> items = numbers(100000);
  REQUIRE(pool.map([](int x) { return x + 1; }, items).back() == 100000);
  REQUIRE(parallel::map([](int x) { return x + 1; }, items).back() == 100000);  // the default pool

  const double before = process_cpu_seconds();
  std::this_thread::sleep_for(300ms);
  const double used = process_cpu_seconds() - before;
  INFO("CPU seconds used by the whole process over 300 ms of idleness: " << used);
  REQUIRE(used < 0.1);
}

#if defined(__unix__) || defined(__APPLE__)
/// Runs body() in a forked child and returns its exit status (the child exits with body()'s
/// result); a child still running after 20 s is killed and fails the test.
template <class Body>
int exit_status_of_child(Body body) {
  const pid_t child = test_support::fork_when_pools_sleep();
  REQUIRE(child >= 0);
  if (child == 0) {
    alarm(20);  // a child that hangs dies on its own
    _exit(body());
  }
  int status = 0;
  pid_t waited = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while ((waited = waitpid(child, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  if (waited == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    FAIL("the forked child did not finish within 20 s");
  }
  REQUIRE(waited == child);
  INFO("child status " << status);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

TEST_CASE("thread_pool: a pool built before fork() refuses work in the child, clearly",
          "[thread_pool][fork]") {
  if (under_thread_sanitizer) {
    WARN("skipped: ThreadSanitizer does not support fork() in a multi-threaded program");
    return;
  }
  auto pool = std::make_unique<parallel::thread_pool>(2);
  REQUIRE(pool->submit([] { return 1; }).get() == 1);
  const int status = exit_status_of_child([&pool] {
    try {
      (void)pool->map([](int x) { return x; }, std::vector<int>{1, 2, 3});
      return 1;  // it must not run: its threads do not exist here
    } catch (const parallel::error& e) {
      if (std::string(e.what()).find("fork") == std::string::npos) return 2;
    }
    try {
      (void)pool->submit([] { return 1; });
      return 3;
    } catch (const parallel::error&) {
    }
    pool.reset();  // must not hang joining threads that are not there (alarm() would kill us)
    return 0;
  });
  REQUIRE(status == 0);
  REQUIRE(pool->submit([] { return 2; }).get() == 2);  // the parent's pool is untouched
}

TEST_CASE("thread_pool: a forked child gets a working default pool", "[thread_pool][fork]") {
  if (under_thread_sanitizer) {
    WARN("skipped: ThreadSanitizer does not support fork() in a multi-threaded program");
    return;
  }
  const std::vector<int> items = numbers(10000);
  std::vector<int> expected;
  for (int x : items) expected.push_back(x * 2);
  // The parent uses the default pool first, so its workers exist when it forks.
  REQUIRE(parallel::map([](int x) { return x * 2; }, items) == expected);

  const int status = exit_status_of_child([&] {
    const bool ok = parallel::map([](int x) { return x * 2; }, items, one_per_task) == expected &&
                    parallel::map(
                        parallel::threads{}, [](int x) { return x * 2; }, items) == expected;
    return ok ? 0 : 1;
  });
  REQUIRE(status == 0);

  // The parent's pool still works.
  REQUIRE(parallel::map([](int x) { return x * 2; }, items) == expected);
}
#endif

TEST_CASE("thread_pool: pools can be created and destroyed many times", "[thread_pool]") {
  watchdog guard{"thread_pool: pools created and destroyed 100 times"};
  const std::vector<int> items = numbers(64);
  for (int round = 0; round < 100; ++round) {
    CAPTURE(round);
    parallel::thread_pool pool{1 + round % 3};
    if (round % 2 == 0) {
      const auto out = pool.map([](int x) { return x * x; }, items, one_per_task);
      REQUIRE(out[63] == 63 * 63);
      REQUIRE(pool.submit([round] { return round; }).get() == round);
    }
    // Odd rounds destroy a pool that never ran anything.
  }
}

TEST_CASE("thread_pool: several caller threads share one pool", "[thread_pool]") {
  watchdog guard{"thread_pool: several caller threads share one pool"};
  parallel::thread_pool pool{2};
  const std::vector<int> items = numbers(5000);
  std::vector<long> totals(4, -1);
  std::vector<std::thread> callers;
  for (std::size_t c = 0; c < totals.size(); ++c) {
    callers.emplace_back([&, c] {
      long total = 0;
      for (int round = 0; round < 5; ++round) {
        total +=
            sum(pool.map([c](int x) { return static_cast<long>(x) * static_cast<long>(c + 1); },
                         items, parallel::options{.chunksize = 16}));
      }
      totals[c] = total;
    });
  }
  for (auto& t : callers) t.join();
  const long base = 5L * 4999 * 5000 / 2;
  for (std::size_t c = 0; c < totals.size(); ++c)
    REQUIRE(totals[c] == base * static_cast<long>(c + 1));
}

TEST_CASE("thread_pool: one worker runs tasks submitted from outside in the order they came",
          "[thread_pool]") {
  watchdog guard{"thread_pool: submit order"};
  parallel::thread_pool pool{1};
  std::atomic<bool> go{false};
  auto first = pool.submit([&go] {
    while (!go.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  // Queued while the worker is busy: it takes them in batches onto its own deque, which it pops
  // from the newest end; a batch pushed oldest first ran backwards (20, 19, ..., 1, 21, ...).
  std::mutex mutex;
  std::vector<int> order;
  std::vector<parallel::future<void>> rest;
  for (int k = 1; k <= 40; ++k) {
    rest.push_back(pool.submit([&mutex, &order, k] {
      std::lock_guard lock(mutex);
      order.push_back(k);
    }));
  }
  go = true;
  first.get();
  for (auto& f : rest) f.get();
  std::vector<int> expected(40);
  std::iota(expected.begin(), expected.end(), 1);
  CHECK(order == expected);
}

TEST_CASE("threads: options.timeout is refused at the call, never ignored", "[thread_pool]") {
  using namespace std::chrono_literals;
  const parallel::options opts{.timeout = 100ms};
  const std::vector<int> xs{1, 2, 3};
  auto twice = [](int x) { return 2 * x; };
  const auto names_the_way_out = [](const parallel::error& e) {
    const std::string what = e.what();
    return what.find("options.timeout (100 ms) is not supported on threads") != std::string::npos &&
           what.find("process_pool") != std::string::npos;
  };
  bool ran = false;
  auto marks = [&ran](int x) {
    ran = true;
    return x;
  };
  try {
    (void)parallel::map(parallel::threads{.workers = 2}, marks, xs, opts);
    FAIL("map with a timeout on threads did not throw");
  } catch (const parallel::error& e) {
    CHECK(names_the_way_out(e));
  }
  CHECK_FALSE(ran);
  parallel::thread_pool pool{2};
  CHECK_THROWS_AS(pool.map(twice, xs, opts), parallel::error);
  CHECK_THROWS_AS(pool.imap(twice, xs, opts), parallel::error);
  CHECK_THROWS_AS(pool.imap_unordered(twice, xs, opts), parallel::error);
  CHECK_THROWS_AS(parallel::imap(parallel::threads{}, twice, xs, opts), parallel::error);
  // Without a timeout the same calls run.
  CHECK(pool.map(twice, xs) == std::vector<int>{2, 4, 6});
}

// --- initializer, on_exit and worker_state (Python's initializer/initargs, mpire's worker_state
// and worker_exit) -----------------------------------------------------------------------------

namespace {

thread_local bool prepared_here = false;  // set by the initializer of the pool under test

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("thread_pool: the initializer runs once on each worker first, and items run only there",
          "[thread_pool][hooks]") {
  watchdog guard("thread_pool initializer", 60s);
  std::atomic<int> prepared{0};
  parallel::thread_pool pool{{.workers = 3, .initializer = [&prepared] {
                                prepared_here = true;
                                prepared.fetch_add(1);
                              }}};
  REQUIRE(pool.size() == 3);
  REQUIRE(prepared.load() == 3);  // the constructor waited for every worker
  // Each item reports whether its thread ran the initializer: the calling thread did not, and
  // without an initializer a small map (started inline) or a single chunk would run here.
  auto on_prepared_thread = [](int) { return prepared_here; };
  const auto all_true = [](const std::vector<bool>& v) {
    for (bool b : v)
      if (!b) return false;
    return true;
  };
  CHECK(all_true(pool.map(on_prepared_thread, numbers(3))));
  CHECK(all_true(pool.map(on_prepared_thread, numbers(10), {.chunksize = 100})));
  CHECK(all_true(pool.map(on_prepared_thread, numbers(200'000))));
  CHECK(all_true(pool.starmap([](int, int) { return prepared_here; },
                              std::vector<std::pair<int, int>>(50, {1, 2}))));
  std::vector<bool> streamed;
  for (bool b : pool.imap(on_prepared_thread, numbers(100))) streamed.push_back(b);
  CHECK(streamed.size() == 100);
  CHECK(all_true(streamed));
  // Many chunks: an imap's consumer runs queued chunks itself, but not on such a pool.
  streamed.clear();
  for (bool b : pool.imap(on_prepared_thread, numbers(20'000))) streamed.push_back(b);
  for (bool b : pool.imap_unordered(on_prepared_thread, numbers(20'000))) streamed.push_back(b);
  CHECK(streamed.size() == 40'000);
  CHECK(all_true(streamed));
  CHECK(pool.submit(on_prepared_thread, 0).get());
  CHECK_FALSE(prepared_here);   // this thread never ran it
  CHECK(prepared.load() == 3);  // and no worker ran it twice
}

TEST_CASE(
    "thread_pool: initargs are what the initializer captures; worker_state lives from task "
    "to task",
    "[thread_pool][hooks]") {
  watchdog guard("thread_pool worker_state", 60s);
  int base = 1000;  // a run-time value, as initargs are
  parallel::thread_pool pool{
      {.workers = 2, .initializer = [base] { parallel::worker_state<int>() = base; }}};
  // Each task counts on its worker's own int: per worker, the counts seen are base+1, base+2...
  auto count = [](int) {
    return std::pair{std::this_thread::get_id(), ++parallel::worker_state<int>()};
  };
  const auto got = pool.map(count, numbers(2000), {.chunksize = 10});
  REQUIRE(got.size() == 2000);
  std::map<std::thread::id, std::vector<int>> per_worker;
  for (const auto& [id, value] : got) per_worker[id].push_back(value);
  CHECK(per_worker.size() <= 2);
  for (auto& [id, values] : per_worker) {
    std::sort(values.begin(), values.end());
    for (std::size_t k = 0; k < values.size(); ++k)
      CHECK(values[k] == base + static_cast<int>(k) + 1);
  }
  // A second call on the same pool goes on counting.
  const auto again = pool.map(count, numbers(10));
  for (const auto& [id, value] : again) CHECK(value > base);
}

TEST_CASE("thread_pool: on_exit runs on each worker after its last task, as the pool ends",
          "[thread_pool][hooks]") {
  watchdog guard("thread_pool on_exit", 60s);
  std::mutex mutex;
  std::set<std::thread::id> started;
  std::set<std::thread::id> ended;
  std::atomic<int> counted_at_exit{0};
  std::atomic<int> ran{0};
  {
    parallel::thread_pool pool{{.workers = 3,
                                .initializer =
                                    [&] {
                                      std::lock_guard lock(mutex);
                                      started.insert(std::this_thread::get_id());
                                    },
                                .on_exit =
                                    [&] {
                                      // After the worker's last task: its count is complete.
                                      counted_at_exit.fetch_add(parallel::worker_state<int>());
                                      std::lock_guard lock(mutex);
                                      ended.insert(std::this_thread::get_id());
                                    }}};
    std::vector<parallel::future<void>> pending;
    for (int i = 0; i < 30; ++i)
      pending.push_back(pool.submit([&ran] {
        std::this_thread::sleep_for(1ms);
        ++parallel::worker_state<int>();
        ran.fetch_add(1);
      }));
    (void)pool.map([](int x) { return ++parallel::worker_state<int>() + x; }, numbers(70));
    // The futures are not waited for: the pool's end runs every task submitted, then on_exit.
  }
  CHECK(ran.load() == 30);
  CHECK(counted_at_exit.load() == 100);
  CHECK(started.size() == 3);
  CHECK(ended == started);

  std::atomic<int> exits{0};
  {
    parallel::thread_pool plain{{.workers = 2, .on_exit = [&exits] { exits.fetch_add(1); }}};
  }
  CHECK(exits.load() == 2);  // on_exit without an initializer
}

TEST_CASE("thread_pool: an initializer that throws fails the constructor with parallel::error",
          "[thread_pool][hooks]") {
  watchdog guard("thread_pool failing initializer", 60s);
  std::atomic<int> calls{0};
  std::atomic<int> exits{0};
  try {
    parallel::thread_pool pool{{.workers = 3,
                                .initializer =
                                    [&calls] {
                                      if (calls.fetch_add(1) == 1)
                                        throw std::runtime_error("no database here");
                                    },
                                .on_exit = [&exits] { exits.fetch_add(1); }}};
    FAIL("the constructor did not throw");
  } catch (const parallel::error& e) {
    INFO(e.what());
    CHECK(contains(e.what(), "parallel::thread_pool: the initializer threw on worker thread"));
    CHECK(contains(e.what(), "no database here"));
  }
  CHECK(calls.load() == 3);
  CHECK(exits.load() == 2);  // the workers whose initializer returned ran their on_exit
}

TEST_CASE("worker_state: each process worker keeps its own from task to task",
          "[thread_pool][hooks][process_pool]") {
  watchdog guard("process worker_state", 60s);
  parallel::process_pool<parallel::start::fork> pool{{.workers = 1}};
  auto count = [](int) { return ++parallel::worker_state<int>(); };
  CHECK(pool.submit(count, 0).get() == 1);
  CHECK(pool.submit(count, 0).get() == 2);
  CHECK(pool.map(count, numbers(3), {.chunksize = 1}) == std::vector<int>{3, 4, 5});
  CHECK(parallel::worker_state<int>() == 0);  // the caller's own is untouched
}

// --- parallel::join: fork-join for recursion -----------------------------------------------

namespace {

std::uint64_t fib_by_join(int n) {
  if (n < 2) return static_cast<std::uint64_t>(n);
  const auto [a, b] =
      parallel::join([n] { return fib_by_join(n - 1); }, [n] { return fib_by_join(n - 2); });
  return a + b;
}

// Waits (at most `limit`) until `other` is set, after setting `mine`: true when both parts of a
// join ran at the same time.
bool meet(std::atomic<bool>& mine, const std::atomic<bool>& other, std::chrono::seconds limit) {
  mine.store(true);
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!other.load()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_CASE("join: recursion by parallel::join computes what the plain recursion does",
          "[thread_pool][join]") {
  watchdog guard("join fib", 60s);
  CHECK(fib_by_join(0) == 0);
  CHECK(fib_by_join(1) == 1);
  CHECK(fib_by_join(25) == 75'025);  // from outside any pool: the default pool runs it
  parallel::thread_pool pool{2};
  CHECK(pool.submit([] { return fib_by_join(22); }).get() == 17'711);  // on that pool's workers
  CHECK(pool.join([] { return fib_by_join(20); }, [] { return std::string("x"); }) ==
        std::pair<std::uint64_t, std::string>{6'765, "x"});
}

TEST_CASE("join: the two parts run at the same time when a worker is free", "[thread_pool][join]") {
  watchdog guard("join concurrency", 60s);
  parallel::thread_pool pool{2};
  std::atomic<bool> left_started{false};
  std::atomic<bool> right_started{false};
  const auto [left_met, right_met] =
      pool.join([&] { return meet(left_started, right_started, 10s); },
                [&] { return meet(right_started, left_started, 10s); });
  CHECK(left_met);
  CHECK(right_met);
}

TEST_CASE("join: an exception waits for the other part, then reaches the caller with its type",
          "[thread_pool][join]") {
  watchdog guard("join exceptions", 60s);
  parallel::thread_pool pool{2};
  std::atomic<bool> other_done{false};
  auto finishes = [&other_done] {
    std::this_thread::sleep_for(20ms);
    other_done.store(true);
  };
  CHECK_THROWS_AS(pool.join([] { throw std::out_of_range("left"); }, finishes), std::out_of_range);
  CHECK(other_done.exchange(false));
  CHECK_THROWS_AS(pool.join(finishes, [] { throw std::invalid_argument("right"); }),
                  std::invalid_argument);
  CHECK(other_done.exchange(false));
  try {  // both throw: the left one's
    pool.join([] { throw std::out_of_range("left"); },
              [] { throw std::invalid_argument("right"); });
    FAIL("no exception");
  } catch (const std::out_of_range& e) {
    CHECK(std::string(e.what()) == "left");
  }
  // From outside any pool too (the default pool runs the join).
  CHECK_THROWS_AS(parallel::join([] {}, [] { throw std::length_error("outside"); }),
                  std::length_error);
  // The pool goes on.
  CHECK(pool.submit([] { return fib_by_join(15); }).get() == 610);
}

TEST_CASE("join: void parts, and recursion deeper than the joins a worker records",
          "[thread_pool][join]") {
  watchdog guard("join void and deep", 60s);
  std::atomic<int> leaves{0};
  // A chain 1000 joins deep (a worker records 128 latent parts; deeper ones run in order).
  std::function<void(int)> chain = [&](int depth) {
    if (depth == 0) return;
    parallel::join([&chain, depth] { chain(depth - 1); }, [&leaves] { leaves.fetch_add(1); });
  };
  chain(1000);
  CHECK(leaves.load() == 1000);
  // A balanced tree of 2^14 leaves.
  std::function<void(int)> tree = [&](int depth) {
    if (depth == 0) {
      leaves.fetch_add(1);
      return;
    }
    parallel::join([&tree, depth] { tree(depth - 1); }, [&tree, depth] { tree(depth - 1); });
  };
  leaves.store(0);
  tree(14);
  CHECK(leaves.load() == (1 << 14));
}
