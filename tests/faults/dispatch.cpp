// Dispatch on demand: a worker holds only work it will start soon, so an item that runs long
// holds no other item behind it while another worker is idle (Python's Pool and the thread
// backend behave so). Shown without timing: the long item waits until every other item has run,
// which it can see only if none of them was queued behind it. For every start method, per call
// and pooled, by map and imap_unordered at chunksize 1; and the same for automatic chunking.
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

}  // namespace

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
      INFO("imap_unordered, chunksize 1: item 0 comes last");
      reset_board();
      std::vector<int> seen;
      for (int v : runner.imap_unordered(hold_first, numbers(items), {.chunksize = 1}))
        seen.push_back(v);
      REQUIRE(seen.size() == static_cast<std::size_t>(items));
      CHECK(seen.back() == 0);
    }
  });
}

#endif  // !_WIN32
