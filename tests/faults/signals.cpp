// Signals in the caller: a caller whose system calls are interrupted every half millisecond (a
// handler installed without SA_RESTART, as a profiler or a progress timer does) still gets every
// result, from every verb, per call and on a pool of every start method, and its timeouts still
// fire; and a worker that dies while the caller is sending it a large task does not kill the
// caller with SIGPIPE, with every start method.
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <list>
#include <parallel/parallel.hpp>
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

std::atomic<int> alarms{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void count_alarm(int) { alarms.fetch_add(1, std::memory_order_relaxed); }

/// SIGALRM every `period_us` to this process, caught by a handler without SA_RESTART, until
/// destroyed. (Timers are not inherited by fork, nor by posix_spawn's child: the workers are not
/// interrupted, only the caller is. A forkserver started under the storm is a spawned child.)
class alarm_storm {
 public:
  explicit alarm_storm(long period_us) {
    struct sigaction action {};
    action.sa_handler = count_alarm;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: blocking calls fail with EINTR
    REQUIRE(::sigaction(SIGALRM, &action, &previous_) == 0);
    const itimerval every{{0, period_us}, {0, period_us}};
    REQUIRE(::setitimer(ITIMER_REAL, &every, nullptr) == 0);
  }
  alarm_storm(const alarm_storm&) = delete;
  alarm_storm& operator=(const alarm_storm&) = delete;
  ~alarm_storm() {
    const itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::sigaction(SIGALRM, &previous_, nullptr);
  }

 private:
  struct sigaction previous_ {};
};

int square(int x) { return x * x; }

int slow_square(int x) {
  sleep_ms(1);
  return x * x;
}

int hang_on_item_1(int x) {
  if (x == 1) sleep_ms(30'000);
  return x;
}

}  // namespace

TEMPLATE_TEST_CASE("faults: a caller interrupted by signals every 0.5 ms still gets every result",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: EINTR storm", 120s};
  constexpr int n = 300;
  const std::vector<int> items = numbers(n);
  alarms = 0;
  for_each_mode<TestType>([&](auto& runner) {
    const alarm_storm storm(500);
    CHECK(runner.map(slow_square, items, {.chunksize = 1}) == squares(n));
    CHECK(runner.map(slow_square, items) == squares(n));
    std::vector<int> ordered;
    for (int r : runner.imap(slow_square, items, {.chunksize = 1})) ordered.push_back(r);
    CHECK(ordered == squares(n));
    std::vector<int> unordered;
    for (int r : runner.imap_unordered(slow_square, items)) unordered.push_back(r);
    std::sort(unordered.begin(), unordered.end());
    CHECK(unordered == squares(n));
  });
  {
    INFO(method_name<TestType>() << ": submit to a process_pool<Start> started under the storm");
    const alarm_storm storm(500);
    pool_of<TestType> pool{{.workers = 2}};
    std::vector<parallel::future<int>> futures;
    for (int i = 0; i < 100; ++i) futures.push_back(pool.submit(slow_square, i));
    for (int i = 0; i < 100; ++i) CHECK(futures[static_cast<std::size_t>(i)].get() == i * i);
  }
  INFO(alarms.load() << " SIGALRMs were handled");
  CHECK(alarms.load() > 100);
}

TEMPLATE_TEST_CASE("faults: options.timeout holds while the caller is interrupted by signals",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: timeout in an EINTR storm", 120s};
  alarms = 0;
  for_each_mode<TestType>([&](auto& runner) {
    const alarm_storm storm(500);
    // The same call with nothing to time out, under the same storm (per call, both start the
    // workers, and spawned ones run this program again).
    const double healthy_ms = time_ms([&] {
      CHECK(runner.map(square, numbers(2), {.chunksize = 1, .timeout = 200ms}) == squares(2));
    });
    const std::uint64_t start = now_ns();
    CHECK_THROWS_AS(runner.map(hang_on_item_1, numbers(2), {.chunksize = 1, .timeout = 200ms}),
                    parallel::timeout_error);
    // No measure of speed: the bound only tells a deadline that fired from one that the
    // interruptions kept pushing back (then the item's 30 s end the call, without an error).
    check_at_once("timeout_error (timeout 200 ms, the item sleeps 30 s)", ms_since(start),
                  healthy_ms, 200);
  });
  INFO(alarms.load() << " SIGALRMs were handled");
  CHECK(alarms.load() > 100);
}

namespace {

/// 4 MiB items: a task frame takes many writes, so the caller is still sending when the worker
/// dies. The item starting with 'd' kills its worker.
std::size_t size_or_die(const std::string& item) {
  if (item[0] == 'd') die(death::sigkill);
  return item.size();
}

std::list<std::string> large_items(bool second_dies) {
  std::list<std::string> out;
  for (int i = 0; i < 8; ++i)
    out.emplace_back(std::size_t{4} << 20, second_dies && i == 1 ? 'd' : 'x');
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE(
    "faults: a worker that dies while the caller sends it a large task is no SIGPIPE",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: SIGPIPE", 60s};
  // The default action: a SIGPIPE would end this test program.
  struct sigaction previous {};
  struct sigaction plain {};
  plain.sa_handler = SIG_DFL;
  REQUIRE(::sigaction(SIGPIPE, &plain, &previous) == 0);
  // A list is no random-access range: per call too, imap ships the items to the workers.
  const std::list<std::string> items = large_items(true);
  const std::list<std::string> fine = large_items(false);
  for_each_mode<TestType>([&](auto& runner) {
    std::size_t done = 0;
    CHECK_THROWS_AS(
        [&] {
          for (std::size_t r : runner.imap(size_or_die, items, {.chunksize = 1})) done += r;
        }(),
        parallel::worker_died);
    CHECK(done == (std::size_t{4} << 20));  // item 0, before the dead worker's item 1
    std::size_t total = 0;
    for (std::size_t r : runner.imap(size_or_die, fine, {.chunksize = 1})) total += r;
    CHECK(total == 8 * (std::size_t{4} << 20));
  });
  ::sigaction(SIGPIPE, &previous, nullptr);
}

#endif  // !_WIN32
