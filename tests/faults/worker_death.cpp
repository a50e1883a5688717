// A worker process dies in the middle of a task (SIGKILL, SIGSEGV, abort(), _exit(3)): the
// caller gets parallel::worker_died within 100 ms of the death (the latency is reported, with a
// warning above 100 ms; asserted only against a healthy call of the same shape in the same run,
// see test_support.hpp), naming the signal or exit code, the worker's pid and the
// item; the dead worker is reaped; imap first yields what came before; a pool replaces the
// worker and stays usable; with submit only the future that ran in the dead worker fails.
// (Python's Pool.map hangs forever here; ProcessPoolExecutor fails every pending future.)
// Every case runs on fork, spawn and forkserver workers, per call and on a pool (or on a pool
// only, for submit and what a pool does with its workers). The tasks reach the test only
// through the shared board, so they run the same in a spawned worker as in a forked one.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <parallel/parallel.hpp>
#include <set>
#include <string>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;

constexpr int dying_item = 7;
constexpr int item_count = 30;

/// The target latency from a death to the caller's error: reported, not asserted (the
/// benchmarks measure it).
constexpr double target_ms = 100;

int square(int x) { return x * x; }

/// A submitted call: sleeps a little, then returns x * x, or dies when x == at.
int slow_square_or_die(int x, int at, death how) {
  if (x == at) die(how);
  sleep_ms(20);
  return x * x;
}

/// Checks the error of a call whose task died in one of the ways, and how fast it came after
/// the death, against a healthy call of the same shape that took `healthy_ms`.
void check_death(const std::string& message, std::uint64_t caught_ns, death how,
                 const std::string& item, double healthy_ms) {
  const board& b = shared_board();
  INFO("what(): " << message);
  REQUIRE(b.died_ns.load() != 0);
  const double latency_ms = static_cast<double>(caught_ns - b.died_ns.load()) / 1e6;
  check_at_once(std::string(name_of(how)) + ": worker_died reached the caller", latency_ms,
                healthy_ms, 0, target_ms);
  CHECK(contains(message, expected_cause(how)));
  CHECK(contains(message, item));
  CHECK(contains(message, "pid " + std::to_string(b.died_pid.load())));
  // Reaped by this process (fork, spawn), or by the forkserver whose child it was: then it is no
  // child here, and must not stay a zombie.
  CHECK(reaped(b.died_pid.load()));
  CHECK_FALSE(lingering_zombie(b.died_pid.load()));
}

}  // namespace

TEMPLATE_TEST_CASE("faults: map raises worker_died within 100 ms when a worker dies mid-task",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: map worker_died", 120s};
  const death how = GENERATE(death::sigkill, death::sigsegv, death::abort_call, death::exit_3);
  const std::size_t chunk = GENERATE(std::size_t{1}, std::size_t{0});
  INFO(name_of(how) << ", chunksize " << chunk);
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    const auto task = [how](int x) {
      if (x == dying_item) die(how);
      sleep_ms(2);
      return x * x;
    };
    const auto healthy = [](int x) {
      sleep_ms(2);
      return x * x;
    };
    const auto [message, caught_ns] = expect_throw<parallel::worker_died>(
        [&] { (void)runner.map(task, items, {.chunksize = chunk}); });
    // The next call works, and is the healthy call of the same shape that "at once" is measured
    // against.
    const double healthy_ms = time_ms(
        [&] { CHECK(runner.map(healthy, items, {.chunksize = chunk}) == squares(item_count)); });
    check_death(message, caught_ns, how, "item " + std::to_string(dying_item), healthy_ms);
  });
}

TEMPLATE_TEST_CASE("faults: worker_died comes at once while the other workers are still busy",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: worker_died while others are busy", 120s};
  const std::vector<int> items = numbers(2);
  for_each_mode<TestType>([&](auto& runner) {
    const double healthy_ms =
        time_ms([&] { CHECK(runner.map(square, items, {.chunksize = 1}) == squares(2)); });
    // Item 0 would keep one worker busy for 30 s (and then count itself); item 1 dies in the
    // other at once. The error must not wait for item 0: item 0 never counts itself.
    const auto task = [](int x) {
      if (x == 1) die(death::sigkill);
      sleep_ms(30'000);
      shared_board().task_runs.fetch_add(1);
      return x;
    };
    const std::uint64_t start = now_ns();
    const auto [message, caught_ns] = expect_throw<parallel::worker_died>(
        [&] { (void)runner.map(task, items, {.chunksize = 1}); });
    INFO("the call took " << static_cast<double>(caught_ns - start) / 1e6 << " ms");
    CHECK(shared_board().task_runs.load() == 0);
    check_death(message, caught_ns, death::sigkill, "item 1", healthy_ms);
  });
}

TEMPLATE_TEST_CASE(
    "faults: imap yields every result before the dead worker's item, then worker_died",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: imap worker_died", 120s};
  const death how = GENERATE(death::sigkill, death::exit_3);
  const std::size_t chunk = GENERATE(std::size_t{1}, std::size_t{0});
  INFO(name_of(how) << ", chunksize " << chunk);
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    const auto task = [how](int x) {
      if (x == dying_item) die(how);
      sleep_ms(2);
      return x * x;
    };
    const auto healthy = [](int x) {
      sleep_ms(2);
      return x * x;
    };
    const double healthy_ms = time_ms([&] {
      std::vector<int> all;
      for (int r : runner.imap(healthy, items, {.chunksize = chunk})) all.push_back(r);
      CHECK(all == squares(item_count));
    });
    {
      std::vector<int> seen;
      const auto [message, caught_ns] = expect_throw<parallel::worker_died>([&] {
        for (int r : runner.imap(task, items, {.chunksize = chunk})) seen.push_back(r);
      });
      check_death(message, caught_ns, how, "item " + std::to_string(dying_item), healthy_ms);
      if (chunk == 1) {
        CHECK(seen == squares(dying_item));
      } else {
        // The items before the dying one in its own chunk died with it (their results were
        // never sent); every result yielded is still the next in order.
        const std::vector<int> before = squares(dying_item);
        REQUIRE(seen.size() <= before.size());
        CHECK(std::equal(seen.begin(), seen.end(), before.begin()));
      }
    }
    {
      reset_board();
      std::vector<int> seen;
      bool raised = false;
      try {
        for (int r : runner.imap_unordered(task, items, {.chunksize = chunk})) seen.push_back(r);
      } catch (const parallel::worker_died& e) {
        raised = true;
        CHECK(contains(e.what(), "item " + std::to_string(dying_item)));
      }
      CHECK(raised);
      const std::set<int> distinct(seen.begin(), seen.end());
      CHECK(distinct.size() == seen.size());
      CHECK(distinct.count(dying_item * dying_item) == 0);
    }
    std::vector<int> again;
    for (int r : runner.imap(square, items)) again.push_back(r);
    CHECK(again == squares(item_count));
  });
}

TEMPLATE_TEST_CASE(
    "faults: a pool destroyed after a failed call does not wait for that call's tasks",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: pool destruction after a failed call", 60s};
  reset_board();
  // The same shape, healthy: a pool made, a call of two items, the pool destroyed.
  const double healthy_ms = time_ms([] {
    pool_of<TestType> pool{{.workers = 2}};
    CHECK(pool.map(square, numbers(2), {.chunksize = 1}) == squares(2));
  });
  const std::uint64_t start = now_ns();
  {
    pool_of<TestType> pool{{.workers = 2}};
    // Item 0 would keep a worker busy for 30 s, then count itself; item 1 dies: the call fails
    // at once, and the pool's end kills the worker still running the failed call's item.
    CHECK_THROWS_AS(pool.map(
                        [](int x) {
                          if (x == 1) die(death::sigkill);
                          sleep_ms(30'000);
                          shared_board().task_runs.fetch_add(1);
                          return x;
                        },
                        numbers(2), {.chunksize = 1}),
                    parallel::worker_died);
  }
  check_at_once("pool made, call failed and pool destroyed", ms_since(start), healthy_ms);
  CHECK(shared_board().task_runs.load() == 0);  // item 0 was killed, not waited for
}

TEMPLATE_TEST_CASE("faults: a pool replaces a dead worker, and the next call runs on every worker",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: pool replaces a dead worker", 60s};
  reset_board();
  pool_of<TestType> pool{{.workers = 2}};
  REQUIRE_THROWS_AS(pool.map(
                        [](int x) {
                          if (x == 3) die(death::sigkill);
                          return x;
                        },
                        numbers(8), {.chunksize = 1}),
                    parallel::worker_died);
  const int dead = shared_board().died_pid.load();
  // The survivor may still hold items of the failed call (cancelled, but sent): a worker with
  // items in flight gets the next call's items after the idle one, so both 200 ms items below
  // could queue in the replacement. A call that completes first drains the survivor.
  CHECK(pool.map(square, numbers(item_count)) == squares(item_count));
  // Two items with chunksize 1 that each wait (up to 30 s) until both have started: they can
  // only finish early in two workers. The replacement may still be starting (a spawned worker
  // under a sanitizer takes long): an item queued in the survivor meanwhile is taken back by
  // the replacement once it is ready.
  shared_board().task_runs = 0;
  const std::vector<int> pids =
      pool.map([](int) { return meet_another_item(30'000); }, numbers(2), {.chunksize = 1});
  const std::set<int> distinct(pids.begin(), pids.end());
  CHECK(distinct.size() == 2);
  CHECK(distinct.count(dead) == 0);
  CHECK(pool.size() == 2);
}

TEMPLATE_TEST_CASE("faults: submit: only the future that ran in the dead worker fails",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: submit worker_died", 120s};
  const death how = GENERATE(death::sigkill, death::sigsegv, death::abort_call, death::exit_3);
  INFO(name_of(how));
  reset_board();
  pool_of<TestType> pool{{.workers = 2}};
  constexpr int calls = 16;
  constexpr int dying_call = 5;
  // A healthy submitted call (the first: it waits for the workers to start).
  const double healthy_ms =
      time_ms([&] { CHECK(pool.submit(slow_square_or_die, 3, -1, how).get() == 9); });
  std::vector<parallel::future<int>> futures;
  for (int i = 0; i < calls; ++i)
    futures.push_back(pool.submit(slow_square_or_die, i, dying_call, how));
  // The dying call first: its error must not wait for the others.
  const auto [message, caught_ns] =
      expect_throw<parallel::worker_died>([&] { (void)futures[dying_call].get(); });
  check_death(message, caught_ns, how, "while running a task", healthy_ms);
  for (int i = 0; i < calls; ++i) {
    if (i == dying_call) continue;
    INFO("future " << i);
    CHECK(futures[static_cast<std::size_t>(i)].get() == i * i);
  }
  CHECK(pool.map(square, numbers(item_count)) == squares(item_count));
}

TEMPLATE_TEST_CASE("faults: submit: two workers dying at once fail two futures, the rest complete",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: submit two deaths", 60s};
  reset_board();
  pool_of<TestType> pool{{.workers = 3}};
  constexpr int calls = 30;
  std::vector<parallel::future<int>> futures;
  for (int i = 0; i < calls; ++i) {
    // Calls 4 and 5 die, most likely in two different workers at about the same time.
    futures.push_back(
        pool.submit(slow_square_or_die, i, i == 4 || i == 5 ? i : -1, death::sigkill));
  }
  int failed = 0;
  for (int i = 0; i < calls; ++i) {
    INFO("future " << i);
    if (i == 4 || i == 5) {
      CHECK_THROWS_AS(futures[static_cast<std::size_t>(i)].get(), parallel::worker_died);
      ++failed;
    } else {
      CHECK(futures[static_cast<std::size_t>(i)].get() == i * i);
    }
  }
  CHECK(failed == 2);
}

TEMPLATE_TEST_CASE("faults: a worker killed from outside while idle is replaced, and no call fails",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: idle worker killed", 60s};
  reset_board();
  pool_of<TestType> pool{{.workers = 2}};
  const auto pid_of_worker = [](int) {
    sleep_ms(50);
    return static_cast<int>(::getpid());
  };
  for (const bool pause : {true, false}) {
    INFO((pause ? "the next call comes 200 ms after the kill" : "the next call comes at once"));
    const std::vector<int> pids = pool.map(pid_of_worker, numbers(2), {.chunksize = 1});
    REQUIRE(::kill(pids[0], SIGKILL) == 0);
    if (pause) sleep_ms(200);
    CHECK(pool.map(square, numbers(item_count)) == squares(item_count));
    CHECK(pool.submit(square, 5).get() == 25);
    const std::vector<int> now = pool.map(pid_of_worker, numbers(2), {.chunksize = 1});
    CHECK(std::count(now.begin(), now.end(), pids[0]) == 0);
  }
}

int die_always(int, death how) { die(how); }

TEMPLATE_TEST_CASE("faults: when every call dies, each future fails alone and the pool survives",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: every call dies", 60s};
  reset_board();
  pool_of<TestType> pool{{.workers = 2}};
  std::vector<parallel::future<int>> futures;
  for (int i = 0; i < 12; ++i)
    futures.push_back(pool.submit(die_always, i, i % 2 == 0 ? death::sigkill : death::exit_3));
  for (int i = 0; i < 12; ++i) {
    INFO("future " << i);
    CHECK_THROWS_AS(futures[static_cast<std::size_t>(i)].get(), parallel::worker_died);
  }
  CHECK(pool.map(square, numbers(item_count)) == squares(item_count));
}

/// 256 KiB results travel through the worker's shared-memory ring, not the socket.
std::vector<int> large_or_die(int x) {
  if (x == dying_item) die(death::sigkill);
  return std::vector<int>(std::size_t{64} << 10, x);
}

TEMPLATE_TEST_CASE("faults: after a death among large results, later large results are intact",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: death and the shared-memory ring", 120s};
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    CHECK_THROWS_AS(runner.map(large_or_die, items, {.chunksize = 1}), parallel::worker_died);
    const auto large = [](int x) { return std::vector<int>(std::size_t{64} << 10, x); };
    const std::vector<std::vector<int>> results = runner.map(large, items);
    REQUIRE(results.size() == items.size());
    for (int i = 0; i < item_count; ++i) {
      INFO("item " << i);
      const auto& r = results[static_cast<std::size_t>(i)];
      CHECK(r.size() == (std::size_t{64} << 10));
      CHECK(std::count(r.begin(), r.end(), i) == static_cast<std::ptrdiff_t>(r.size()));
    }
  });
}

/// Counts its runs in the shared page; call 1 dies.
int counted_or_die(int x) {
  if (x == 1) {
    sleep_ms(50);
    die(death::sigkill);
  }
  shared_board().task_runs.fetch_add(1);
  return x + 100;
}

TEMPLATE_TEST_CASE("faults: a call that finished before its worker died is not run again",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: no second run", 60s};
  reset_board();
  pool_of<TestType> pool{{.workers = 1}};
  // Both calls go to the one worker together; the first ends, then the second kills it.
  parallel::future<int> first = pool.submit(counted_or_die, 0);
  parallel::future<int> second = pool.submit(counted_or_die, 1);
  CHECK_THROWS_AS(second.get(), parallel::worker_died);
  CHECK(first.get() == 100);
  CHECK(shared_board().task_runs.load() == 1);
}

/// The initializer of the early-death tests: records its worker, then does what the test set
/// in the shared page: 0 nothing, 1 sleeps 3 s (the test kills it meanwhile), 2 SIGKILLs its
/// own worker.
void initializer_by_mode() {
  board& b = shared_board();
  b.starting_pid = static_cast<int>(::getpid());
  b.initializer_runs.fetch_add(1);
  if (b.mode.load() == 1) sleep_ms(3000);
  if (b.mode.load() == 2) ::raise(SIGKILL);
}

/// Runs a call on the pool's one worker (so a worker of the pool was ready), sets what the
/// workers started next do (initializer_by_mode), and kills that worker: the pool starts its
/// replacement at once.
template <class Pool>
void replace_ready_worker(Pool& pool, int mode) {
  CHECK(pool.map(square, numbers(4)) == squares(4));
  shared_board().mode = mode;
  ::kill(shared_board().starting_pid.load(), SIGKILL);
}

/// Waits (up to 30 s) until the initializer has run `runs` times in all.
void await_initializer_runs(int runs) {
  const std::uint64_t start = now_ns();
  while (shared_board().initializer_runs.load() < runs && ms_since(start) < 30'000) sleep_ms(1);
  REQUIRE(shared_board().initializer_runs.load() >= runs);
}

TEMPLATE_TEST_CASE(
    "faults: a worker killed before it is ready is started again, and what waited for it runs",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: early death restarted", 60s};
  board& b = reset_board();
  pool_of<TestType> pool{{.workers = 1, .initializer = initializer_by_mode}};
  replace_ready_worker(pool, 1);  // the replacement stays in its initializer
  await_initializer_runs(2);
  // A call goes to the replacement before it is ready; then the replacement is killed.
  b.mode = 0;
  parallel::future<int> waiting = pool.submit(square, 7);
  ::kill(b.starting_pid.load(), SIGKILL);
  // Not spawn_error: a start cut short by a kill is no start that cannot work.
  CHECK(waiting.get() == 49);
  CHECK(b.initializer_runs.load() == 3);
  CHECK(pool.map(square, numbers(4)) == squares(4));
}

TEMPLATE_TEST_CASE(
    "faults: workers killed before they are ready, again and again, give spawn_error, no loop",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: early deaths bounded", 60s};
  board& b = reset_board();
  const std::uint64_t made = now_ns();
  pool_of<TestType> pool{{.workers = 1, .initializer = initializer_by_mode}};
  replace_ready_worker(pool, 2);  // from now on every new worker kills itself in its initializer
  // One worker started and one call run; the error comes after some five starts.
  const double one_start_ms = ms_since(made);
  const std::uint64_t start = now_ns();
  parallel::future<int> waiting = pool.submit(square, 7);
  try {
    (void)waiting.get();
    FAIL("the call returned although no worker could start");
  } catch (const parallel::spawn_error& e) {
    INFO("what(): " << e.what());
    CHECK(contains(e.what(), "SIGKILL"));
    CHECK(contains(e.what(), "initializer"));
  }
  check_at_once("spawn_error", ms_since(start), 6 * one_start_ms);
  // The first worker and its replacement, three restarts, and maybe one more start for the call.
  const int runs = b.initializer_runs.load();
  INFO(runs << " initializer runs");
  CHECK(runs >= 5);
  CHECK(runs <= 6);
  // Once starting works again, so does the pool.
  b.mode = 0;
  CHECK(pool.submit(square, 3).get() == 9);
}

#endif  // !_WIN32
