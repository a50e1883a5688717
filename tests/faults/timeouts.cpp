// options.timeout: an item that outlives it has its worker killed and the call raises
// parallel::timeout_error promptly, naming the item and the timeout; the killed worker is
// reaped and the workers stay usable. The timeout is per item: a chunk of items that are each
// under it, or items queued behind others in one worker, do not time out. And a result is not
// held back by the task queued after it in the same worker. On fork, spawn and forkserver
// workers, per call and on a pool (submit: on a pool). Per call, a time measured from the call
// includes starting the workers (a spawned one runs this program again: some 10 ms, under a
// sanitizer some 100 ms), well inside the bounds.
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
constexpr double bound_ms = 2000;  // the timeout is 200 ms; the slow item would take 10 s

int square(int x) { return x * x; }

/// Item 3 sleeps 10 s (recording its worker's pid first); the others return at once.
int square_or_hang(int x) {
  if (x == slow_item) {
    shared_board().died_pid = static_cast<int>(::getpid());
    sleep_ms(10'000);
  }
  return x * x;
}

int sleepy_square(int x) {
  sleep_ms(60);
  return x * x;
}

int slower_square(int x) {
  sleep_ms(150);
  return x * x;
}

/// True once process `pid` is gone (killed and reaped) or, waiting up to 1 s, soon after: a
/// forkserver's worker is reaped by the server, not by this process.
bool ended(int pid) {
  const std::uint64_t start = now_ns();
  while (process_state(pid) != 0) {
    if (ms_since(start) > 1000) return false;
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
    INFO("timeout_error after " << took_ms << " ms");
    CHECK(raised);
    CHECK(took_ms < bound_ms);
    const int pid = shared_board().died_pid.load();
    REQUIRE(pid != 0);
    CHECK(reaped(pid));  // by this process, when it is its child (fork, spawn)
    CHECK(ended(pid));   // killed, not left sleeping; and not left a zombie
    CHECK(runner.map(square, items, {.timeout = 200ms}) == squares(item_count));
  });
}

TEMPLATE_TEST_CASE("faults: imap yields the results before the overdue item, then timeout_error",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: imap timeout", 120s};
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
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
      const double took_ms = ms_since(start);
      INFO("timeout_error after " << took_ms << " ms");
      CHECK(raised);
      CHECK(took_ms < bound_ms);
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
      const double took_ms = ms_since(start);
      INFO("timeout_error after " << took_ms << " ms");
      CHECK(raised);
      CHECK(took_ms < bound_ms);
      CHECK(seen.count(slow_item * slow_item) == 0);
    }
    std::vector<int> again;
    for (int r : runner.imap(square, items)) again.push_back(r);
    CHECK(again == squares(item_count));
  });
}

TEMPLATE_TEST_CASE("faults: the timeout is per item: a long chunk of short items does not time out",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: timeout per item", 120s};
  const std::vector<int> items = numbers(8);
  for_each_mode<TestType>([&](auto& runner) {
    // One chunk of 8 items of 60 ms: 480 ms in one task, each item well under 200 ms.
    CHECK(runner.map(sleepy_square, items, {.chunksize = 8, .timeout = 200ms}) == squares(8));
  });
}

TEMPLATE_TEST_CASE("faults: the timeout starts when an item starts, not when it is queued",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: timeout starts with the item", 120s};
  // One worker, four items of 150 ms sent one by one with a timeout of 250 ms: an item queued
  // in the worker behind another waits 150 ms before it starts, then runs 150 ms (300 ms after
  // it was sent; 100 ms under the timeout after it started).
  const std::vector<int> items = numbers(4);
  const parallel::options opts{.chunksize = 1, .timeout = 250ms};
  {
    INFO(method_name<TestType>() << ": processes<Start>{.workers = 1}");
    reset_board();
    per_call_of<TestType> runner{1};
    CHECK(runner.map(slower_square, items, opts) == squares(4));
  }
  {
    INFO(method_name<TestType>() << ": process_pool<Start>{{.workers = 1}}");
    reset_board();
    pool_of<TestType> pool{{.workers = 1}};
    CHECK(pool.map(slower_square, items, opts) == squares(4));
  }
}

// A worker runs the tasks queued to it one after another; a finished task's result must reach
// the caller when the task ends, not when the next queued task ends too.

int fast_or_slow(int x) {
  if (x == 1) sleep_ms(3000);
  return x + 100;
}

TEMPLATE_TEST_CASE(
    "faults: a submitted call's result is not held back by the next call in its worker",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: submit result latency", 60s};
  reset_board();
  pool_of<TestType> pool{{.workers = 1}};
  const std::uint64_t start = now_ns();
  parallel::future<int> fast = pool.submit(fast_or_slow, 0);
  parallel::future<int> slow = pool.submit(fast_or_slow, 1);
  const bool ready = fast.wait_for(1500ms) == std::future_status::ready;
  INFO("the fast call's future was ready after " << ms_since(start) << " ms");
  CHECK(ready);
  CHECK(fast.get() == 100);
  CHECK(slow.get() == 101);
}

TEMPLATE_TEST_CASE("faults: imap yields a result while the next item in the same worker still runs",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: imap result latency", 60s};
  const std::vector<int> items = numbers(2);
  const auto first_result_ms = [&](auto& runner) {
    const std::uint64_t start = now_ns();
    double first = -1;
    for (int r : runner.imap(fast_or_slow, items, {.chunksize = 1})) {
      if (first < 0) first = ms_since(start);
      (void)r;
    }
    return first;
  };
  {
    INFO(method_name<TestType>() << ": processes<Start>{.workers = 1}");
    per_call_of<TestType> runner{1};
    const double ms = first_result_ms(runner);
    INFO("first result after " << ms << " ms (the second item takes 3000 ms)");
    CHECK(ms < 1500);
  }
  {
    INFO(method_name<TestType>() << ": process_pool<Start>{{.workers = 1}}");
    pool_of<TestType> pool{{.workers = 1}};
    const double ms = first_result_ms(pool);
    INFO("first result after " << ms << " ms (the second item takes 3000 ms)");
    CHECK(ms < 1500);
  }
}

#endif  // !_WIN32
