// Dispatch on demand: a worker holds only work it will start soon, so an item that runs long
// holds no other item behind it while another worker is idle (Python's Pool and the thread
// backend behave so). Shown without timing: the long item waits until every other item has run,
// which it can see only if none of them was held behind it. For every start method, per call
// and pooled, by map and imap_unordered at chunksize 1; and the same for automatic chunking.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <parallel/parallel.hpp>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;

constexpr int items = 10;
constexpr long give_up_ms = 60'000;

/// Item 0 waits until the other items have all run (or gives up after a minute and says so by
/// returning -1); the others count themselves on the board and return their value.
int hold_first(int x) {
  board& b = shared_board();
  if (x != 0) {
    sleep_ms(2);
    b.task_runs.fetch_add(1);
    return x;
  }
  for (long waited = 0; b.task_runs.load() < items - 1; ++waited) {
    if (waited == give_up_ms) return -1;
    sleep_ms(1);
  }
  return 0;
}

/// Every item counts itself on the board; all but item 0 then wait until the board's mode is 1
/// (or a minute: then -1).
int hold_all_but_first(int x) {
  board& b = shared_board();
  b.task_runs.fetch_add(1);
  if (x == 0) return x;
  for (long waited = 0; b.mode.load() != 1; ++waited) {
    if (waited == give_up_ms) return -1;
    sleep_ms(1);
  }
  return x;
}

int instant(int x) { return x; }

}  // namespace

TEMPLATE_TEST_CASE("faults: leaving an imap withdraws its tasks queued in the workers",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: leaving an imap withdraws its queued tasks", 300s};
  reset_board();
  pool_of<TestType> pool{{.workers = 2}};
  // Short items first: the pool then queues several tasks in each worker behind the running one.
  REQUIRE(pool.map(instant, numbers(400), {.chunksize = 1}) == numbers(400));
  constexpr int n = 40;
  {
    // Item 0 comes back; two other items then hold both workers, with the others queued behind
    // them (or still in the caller). The loop is left after item 0.
    auto results = pool.imap_unordered(hold_all_but_first, numbers(n), {.chunksize = 1});
    for (int v : results) {
      CHECK(v == 0);
      break;
    }
  }
  shared_board().mode = 1;  // the items that hold the workers end
  // Withdrawn tasks never run: a worker that still held them would run them now, before the
  // next call's tasks or right after them.
  CHECK(pool.map(instant, numbers(8), {.chunksize = 1}) == numbers(8));
  const std::uint64_t since = now_ns();
  while (shared_board().task_runs.load() <= 3 && ms_since(since) < 1000) sleep_ms(5);
  // Item 0, and at most one item per worker that had started when the loop was left.
  CHECK(shared_board().task_runs.load() >= 1);
  CHECK(shared_board().task_runs.load() <= 3);
}

TEMPLATE_TEST_CASE("faults: a long item holds no other item behind it in its worker",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: a long item holds nothing behind it", 300s};
  for_each_mode<TestType>([](auto& runner) {
    {
      INFO("map, chunksize 1: item 0 saw the other " << items - 1 << " items run");
      reset_board();
      CHECK(runner.map(hold_first, numbers(items), {.chunksize = 1}) == numbers(items));
    }
    {
      INFO("map, automatic chunks");
      reset_board();
      CHECK(runner.map(hold_first, numbers(items)) == numbers(items));
    }
    {
      INFO("imap_unordered, chunksize 1: item 0 saw the other " << items - 1 << " items run");
      reset_board();
      std::vector<int> seen;
      for (int v : runner.imap_unordered(hold_first, numbers(items), {.chunksize = 1}))
        seen.push_back(v);
      std::sort(seen.begin(), seen.end());
      CHECK(seen == numbers(items));
    }
  });
}

#endif  // !_WIN32
