// A task throws in a worker process: the caller gets parallel::remote_error with the exception's
// demangled type name, its what() and the index of the item, whatever the chunk size; imap
// first yields every result before the failing item; imap_unordered yields only true results;
// a submitted call's future rethrows it; and the workers stay usable. On fork, spawn and
// forkserver workers, per call and on a pool (submit: on a pool).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <parallel/parallel.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

namespace fault_tests {
/// A user's exception type, in a named namespace: its demangled name is qualified.
struct bad_input : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace fault_tests

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;

constexpr int failing_item = 13;
constexpr int item_count = 40;

int square(int x) { return x * x; }

int square_or_out_of_range(int x) {
  if (x == failing_item) throw std::out_of_range("item 13 is out of range");
  return x * x;
}

int square_or_int(int x) {
  if (x == failing_item) throw 42;
  return x * x;
}

int square_or_bad_input(int x) {
  if (x == failing_item) throw fault_tests::bad_input("thirteen is unlucky");
  return x * x;
}

/// A throwing task and what remote_error must say about it.
struct thrower {
  int (*task)(int);
  const char* type_name;
  const char* what;  // a part of what(); "" for an exception that is no std::exception
};

const thrower throwers[] = {
    {square_or_out_of_range, "std::out_of_range", "item 13 is out of range"},
    {square_or_int, "int", ""},
    {square_or_bad_input, "fault_tests::bad_input", "thirteen is unlucky"},
};

void check_remote_error(const parallel::remote_error& e, const thrower& t, std::size_t index) {
  INFO("what(): " << e.what());
  CHECK(e.type_name() == t.type_name);
  CHECK(e.index() == index);
  CHECK(contains(e.what(), t.type_name));
  CHECK(contains(e.what(), t.what));
  if (index != parallel::remote_error::no_index)
    CHECK(contains(e.what(), "item " + std::to_string(index)));
}

}  // namespace

TEMPLATE_TEST_CASE(
    "faults: map raises remote_error with the task's type name, what() and item index",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: map remote_error", 120s};
  const std::size_t chunk = GENERATE(std::size_t{1}, std::size_t{4}, std::size_t{0});
  INFO("chunksize " << chunk);
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    for (const thrower& t : throwers) {
      INFO("task throws " << t.type_name);
      bool raised = false;
      try {
        (void)runner.map(t.task, items, {.chunksize = chunk});
      } catch (const parallel::remote_error& e) {
        raised = true;
        check_remote_error(e, t, failing_item);
      }
      CHECK(raised);
    }
    // The workers (or, per call, the next call's) still work.
    CHECK(runner.map(square, items) == squares(item_count));
  });
}

TEMPLATE_TEST_CASE(
    "faults: imap yields every result before the failing item, then raises remote_error",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: imap remote_error", 120s};
  const std::size_t chunk = GENERATE(std::size_t{1}, std::size_t{4}, std::size_t{0});
  INFO("chunksize " << chunk);
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    for (const thrower& t : throwers) {
      INFO("task throws " << t.type_name);
      std::vector<int> seen;
      bool raised = false;
      try {
        for (int r : runner.imap(t.task, items, {.chunksize = chunk})) seen.push_back(r);
      } catch (const parallel::remote_error& e) {
        raised = true;
        check_remote_error(e, t, failing_item);
      }
      CHECK(raised);
      CHECK(seen == squares(failing_item));
    }
    std::vector<int> again;
    for (int r : runner.imap(square, items)) again.push_back(r);
    CHECK(again == squares(item_count));
  });
}

TEMPLATE_TEST_CASE("faults: imap_unordered yields only true results, then raises remote_error",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: imap_unordered remote_error", 120s};
  const std::size_t chunk = GENERATE(std::size_t{1}, std::size_t{4}, std::size_t{0});
  INFO("chunksize " << chunk);
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    for (const thrower& t : throwers) {
      INFO("task throws " << t.type_name);
      std::vector<int> seen;
      bool raised = false;
      try {
        for (int r : runner.imap_unordered(t.task, items, {.chunksize = chunk})) seen.push_back(r);
      } catch (const parallel::remote_error& e) {
        raised = true;
        check_remote_error(e, t, failing_item);
      }
      CHECK(raised);
      // Each result once, each the square of an item that did not fail.
      const std::set<int> distinct(seen.begin(), seen.end());
      CHECK(distinct.size() == seen.size());
      const std::vector<int> all = squares(item_count);
      for (int r : seen) {
        CHECK(std::find(all.begin(), all.end(), r) != all.end());
        CHECK(r != failing_item * failing_item);
      }
    }
    std::vector<int> again;
    for (int r : runner.imap_unordered(square, items)) again.push_back(r);
    std::sort(again.begin(), again.end());
    CHECK(again == squares(item_count));
  });
}

TEMPLATE_TEST_CASE(
    "faults: a submitted call that throws fails its own future with remote_error only",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: submit remote_error", 60s};
  reset_board();
  pool_of<TestType> pool{{.workers = 2}};
  for (const thrower& t : throwers) {
    INFO("task throws " << t.type_name);
    std::vector<parallel::future<int>> futures;
    for (int i = 0; i < 20; ++i) futures.push_back(pool.submit(t.task, i));
    for (int i = 0; i < 20; ++i) {
      INFO("future " << i);
      if (i == failing_item) {
        bool raised = false;
        try {
          (void)futures[static_cast<std::size_t>(i)].get();
        } catch (const parallel::remote_error& e) {
          raised = true;
          // A submitted call is no item of a sequence: there is no index to report.
          check_remote_error(e, t, parallel::remote_error::no_index);
        }
        CHECK(raised);
      } else {
        CHECK(futures[static_cast<std::size_t>(i)].get() == i * i);
      }
    }
  }
  CHECK(pool.map(square, numbers(item_count)) == squares(item_count));
}

namespace {
struct cancelled_by_user : std::runtime_error {
  cancelled_by_user() : std::runtime_error("enough") {}
};

int slow_square(int x) {
  sleep_ms(2);
  return x * x;
}
}  // namespace

TEMPLATE_TEST_CASE("faults: an exception from the progress callback reaches the caller as it is",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: progress throws", 60s};
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    const auto stop_at_five = [](std::size_t done, std::size_t) {
      if (done >= 5) throw cancelled_by_user();
    };
    CHECK_THROWS_AS(runner.map(slow_square, items, {.chunksize = 1, .progress = stop_at_five}),
                    cancelled_by_user);
    CHECK_THROWS_AS(
        [&] {
          for (int r : runner.imap(slow_square, items, {.chunksize = 1, .progress = stop_at_five}))
            (void)r;
        }(),
        cancelled_by_user);
    CHECK(runner.map(square, items) == squares(item_count));
  });
}

#endif  // !_WIN32
