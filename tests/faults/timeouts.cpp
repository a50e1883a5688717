// options.timeout: an item that outlives it has its worker killed and the call raises
// parallel::timeout_error promptly, naming the item and the timeout; the killed worker is
// reaped and the workers stay usable. The timeout is per item: a chunk of items that are each
// under it, or items queued behind others in one worker, do not time out. And a result is not
// held back by the task queued after it in the same worker. On fork, spawn and forkserver
// workers, per call and on a pool (submit: on a pool). "Promptly" is checked against a healthy
// call of the same shape in the same run (test_support.hpp), which per call includes starting
// the workers as the failing call does; "not held back" by seeing that the task queued behind
// has not ended yet. The durations that must stay under a timeout leave it 150 ms or more.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
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

constexpr int slow_item = 3;
constexpr int item_count = 12;
constexpr double timeout_ms = 200;

int square(int x) { return x * x; }

/// Item 3 sleeps a minute (recording its worker's pid first); the others return at once.
int square_or_hang(int x) {
  if (x == slow_item) {
    shared_board().died_pid = static_cast<int>(::getpid());
    sleep_ms(60'000);
  }
  return x * x;
}

int sleepy_square(int x) {
  sleep_ms(80);
  return x * x;
}

int slower_square(int x) {
  sleep_ms(250);
  return x * x;
}

/// True once process `pid` is gone (killed and reaped) or, waiting up to 20 s (its task would
/// sleep on for a minute), soon after: a forkserver's worker is reaped by the server, not by this
/// process.
bool ended(int pid) {
  const std::uint64_t start = now_ns();
  while (process_state(pid) != 0) {
    if (ms_since(start) > 20'000) return false;
    sleep_ms(1);
  }
  return true;
}

void check_timeout(const parallel::timeout_error& e) {
  INFO("what(): " << e.what());
  CHECK(contains(e.what(), "item " + std::to_string(slow_item)));
  CHECK(contains(e.what(), "200 ms"));
}

}  // namespace

TEMPLATE_TEST_CASE(
    "faults: an item over options.timeout raises timeout_error and its worker is killed",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: map timeout", 120s};
  const std::size_t chunk = GENERATE(std::size_t{1}, std::size_t{0});
  INFO("chunksize " << chunk);
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    const std::uint64_t start = now_ns();
    bool raised = false;
    try {
      (void)runner.map(square_or_hang, items, {.chunksize = chunk, .timeout = 200ms});
    } catch (const parallel::timeout_error& e) {
      raised = true;
      check_timeout(e);
    }
    const double took_ms = ms_since(start);
    CHECK(raised);
    const int pid = shared_board().died_pid.load();
    REQUIRE(pid != 0);
    CHECK(reaped(pid));  // by this process, when it is its child (fork, spawn)
    CHECK(ended(pid));   // killed, not left sleeping; and not left a zombie
    const double healthy_ms = time_ms([&] {
      CHECK(runner.map(square, items, {.chunksize = chunk, .timeout = 200ms}) ==
            squares(item_count));
    });
    check_at_once("timeout_error", took_ms, healthy_ms, timeout_ms);
  });
}

TEMPLATE_TEST_CASE("faults: imap yields the results before the overdue item, then timeout_error",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: imap timeout", 120s};
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    double ordered_ms = 0;
    double unordered_ms = 0;
    {
      std::vector<int> seen;
      const std::uint64_t start = now_ns();
      bool raised = false;
      try {
        for (int r : runner.imap(square_or_hang, items, {.chunksize = 1, .timeout = 200ms}))
          seen.push_back(r);
      } catch (const parallel::timeout_error& e) {
        raised = true;
        check_timeout(e);
      }
      ordered_ms = ms_since(start);
      CHECK(raised);
      CHECK(seen == squares(slow_item));
    }
    {
      const std::uint64_t start = now_ns();
      std::set<int> seen;
      bool raised = false;
      try {
        for (int r :
             runner.imap_unordered(square_or_hang, items, {.chunksize = 1, .timeout = 200ms}))
          seen.insert(r);
      } catch (const parallel::timeout_error& e) {
        raised = true;
        check_timeout(e);
      }
      unordered_ms = ms_since(start);
      CHECK(raised);
      CHECK(seen.count(slow_item * slow_item) == 0);
    }
    const double healthy_ms = time_ms([&] {
      std::vector<int> again;
      for (int r : runner.imap(square, items, {.chunksize = 1, .timeout = 200ms}))
        again.push_back(r);
      CHECK(again == squares(item_count));
    });
    check_at_once("imap: timeout_error", ordered_ms, healthy_ms, timeout_ms);
    check_at_once("imap_unordered: timeout_error", unordered_ms, healthy_ms, timeout_ms);
  });
}

TEMPLATE_TEST_CASE("faults: the timeout is per item: a long chunk of short items does not time out",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: timeout per item", 120s};
  const std::vector<int> items = numbers(6);
  for_each_mode<TestType>([&](auto& runner) {
    // One chunk of 6 items of 80 ms: 480 ms in one task, each item 300 ms under the timeout.
    CHECK(runner.map(sleepy_square, items, {.chunksize = 6, .timeout = 380ms}) == squares(6));
  });
}

TEMPLATE_TEST_CASE("faults: the timeout starts when an item starts, not when it is queued",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: timeout starts with the item", 120s};
  // One worker, three items of 250 ms sent one by one with a timeout of 400 ms: an item queued
  // in the worker behind another waits 250 ms before it starts, then runs 250 ms (500 ms after
  // it was sent; 150 ms under the timeout after it started).
  const std::vector<int> items = numbers(3);
  const parallel::options opts{.chunksize = 1, .timeout = 400ms};
  {
    INFO(method_name<TestType>() << ": processes<Start>{.workers = 1}");
    reset_board();
    per_call_of<TestType> runner{1};
    CHECK(runner.map(slower_square, items, opts) == squares(3));
  }
  {
    INFO(method_name<TestType>() << ": process_pool<Start>{{.workers = 1}}");
    reset_board();
    pool_of<TestType> pool{{.workers = 1}};
    CHECK(pool.map(slower_square, items, opts) == squares(3));
  }
}

// A worker runs the tasks queued to it one after another; a finished task's result must reach
// the caller when the task ends, not when the next queued task ends too. The next task runs until
// the test, holding the first result, lets it end (or 30 s): a result held back would come only
// after that, so no time needs measuring.

/// Item 1 waits until the shared page's mode is 1 (at most 30 s), then counts itself done.
int fast_or_held(int x) {
  if (x == 1) {
    board& b = shared_board();
    const std::uint64_t start = now_ns();
    while (b.mode.load() != 1 && ms_since(start) < 30'000) sleep_ms(1);
    b.task_runs.fetch_add(1);
  }
  return x + 100;
}

/// Lets fast_or_held's item 1 end.
void release_held() { shared_board().mode = 1; }

TEMPLATE_TEST_CASE(
    "faults: a submitted call's result is not held back by the next call in its worker",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: submit result latency", 60s};
  board& b = reset_board();
  pool_of<TestType> pool{{.workers = 1}};
  const std::uint64_t start = now_ns();
  parallel::future<int> fast = pool.submit(fast_or_held, 0);
  parallel::future<int> held = pool.submit(fast_or_held, 1);
  const bool ready = fast.wait_for(20s) == std::future_status::ready;
  const int held_ended = b.task_runs.load();
  release_held();
  INFO("the fast call's future was ready after " << ms_since(start) << " ms");
  CHECK(ready);
  CHECK(held_ended == 0);  // ready while the call queued behind it still ran
  CHECK(fast.get() == 100);
  CHECK(held.get() == 101);
}

TEMPLATE_TEST_CASE("faults: imap yields a result while the next item in the same worker still runs",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: imap result latency", 60s};
  const std::vector<int> items = numbers(2);
  // Checks that the first result comes while the second item still runs, then lets it end.
  const auto check_first_result = [&](auto& runner) {
    board& b = reset_board();
    const std::uint64_t start = now_ns();
    std::vector<int> results;
    for (int r : runner.imap(fast_or_held, items, {.chunksize = 1})) {
      if (results.empty()) {
        const int held_ended = b.task_runs.load();
        release_held();
        INFO("first result after " << ms_since(start) << " ms");
        CHECK(held_ended == 0);
      }
      results.push_back(r);
    }
    CHECK(results == std::vector<int>{100, 101});
  };
  {
    INFO(method_name<TestType>() << ": processes<Start>{.workers = 1}");
    per_call_of<TestType> runner{1};
    check_first_result(runner);
  }
  {
    INFO(method_name<TestType>() << ": process_pool<Start>{{.workers = 1}}");
    pool_of<TestType> pool{{.workers = 1}};
    check_first_result(pool);
  }
}

#endif  // !_WIN32
