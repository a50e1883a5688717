// Workers SIGKILL each other while a call runs (loky's TestExecutorDeadLock crash races): two
// workers each kill every other worker of the call, then themselves, while the rest of the call
// waits. The caller gets parallel::worker_died naming SIGKILL, at once, from map, imap,
// imap_unordered and the futures of submit; a pool replaces all of them and goes on; nothing
// hangs and nothing is left behind. For fork, spawn and forkserver workers, per call and on a
// pool of three.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <parallel/parallel.hpp>
#include <sstream>
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

constexpr int workers = 3;
constexpr int item_count = 12;
constexpr int first_killer = 3;  // items 3 and 4 kill; the others sleep and return x * x
constexpr int last_killer = 4;
// Long enough that every worker has started and answered its handshake before the kills, so
// that each death is a worker's death mid-task (a worker killed before its handshake would be
// a start-up failure: spawn_error for what waits).
constexpr long nap_ms = test_support::under_sanitizer ? 400 : 100;

/// An item: its number, and the processes a killer must spare (what this process ran before
/// the call: a forkserver).
struct kill_order {
  int index = 0;
  int spared[4] = {};
};

/// When process `pid` started, in clock ticks after boot (/proc/<pid>/stat, field 22); -1 when
/// it is gone.
long long start_time(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return -1;
  std::size_t at = stat.rfind(')');
  if (at == std::string::npos) return -1;
  // Fields 3.. follow ") "; the start time is the 20th of them.
  std::string field;
  std::istringstream rest(stat.substr(at + 2));
  for (int i = 3; i <= 22; ++i) rest >> field;
  return std::stoll(field);
}

std::string exe_of(int pid) {
  char target[4096];
  const std::string link = "/proc/" + std::to_string(pid) + "/exe";
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  return n < 0 ? std::string() : std::string(target, static_cast<std::size_t>(n));
}

/// The other workers of this call: children of this worker's parent that run this executable
/// and started with it (within 50 ms: a replacement started after the first kill is spared, so
/// that no worker dies before its handshake), but the spared ones.
std::vector<int> fellow_workers(const kill_order& order) {
  std::vector<int> out;
  const int self = static_cast<int>(::getpid());
  const int parent = static_cast<int>(::getppid());
  if (parent <= 1) return out;  // orphaned: no fellows to find
  const std::string exe = exe_of(self);
  const long long born = start_time(self);
  for (int pid : children_of(parent)) {
    if (pid == self || std::count(std::begin(order.spared), std::end(order.spared), pid) != 0)
      continue;
    const long long their = start_time(pid);
    if (exe_of(pid) != exe || their < 0 || std::abs(their - born) > 5) continue;
    out.push_back(pid);
  }
  return out;
}

int kill_each_other(kill_order order) {
  sleep_ms(order.index < first_killer ? nap_ms : 20);
  if (order.index >= first_killer && order.index <= last_killer) {
    for (int pid : fellow_workers(order)) ::kill(pid, SIGKILL);
    ::raise(SIGKILL);
  }
  return order.index * order.index;
}

int square(int x) { return x * x; }

std::vector<kill_order> orders() {
  const std::vector<int> before = children();  // the test's forkserver, when it has one
  REQUIRE(before.size() <= 4);
  std::vector<kill_order> out(item_count);
  for (int i = 0; i < item_count; ++i) {
    out[static_cast<std::size_t>(i)].index = i;
    std::copy(before.begin(), before.end(), out[static_cast<std::size_t>(i)].spared);
  }
  return out;
}

void check_died(const parallel::worker_died& e) {
  INFO("worker_died: " << e.what());
  CHECK(contains(e.what(), "SIGKILL"));
}

/// A result yielded before the error is a true one of a sleeping item.
void check_true_results(const std::vector<int>& seen) {
  for (int r : seen) {
    INFO("result " << r);
    CHECK((r == 0 || r == 1 || r == 4 || r >= (last_killer + 1) * (last_killer + 1)));
  }
}

template <class Start, class Check>
void for_each_mode_of_three(Check check) {
  {
    INFO(method_name<Start>() << ": processes<Start>{.workers = 3}, workers started per call");
    per_call_of<Start> runner{workers};
    check(runner);
  }
  {
    INFO(method_name<Start>() << ": process_pool<Start>{{.workers = 3}}");
    pool_of<Start> pool{{.workers = workers}};
    check(pool);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("faults: workers that SIGKILL each other during a call give worker_died",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: crash races", 120s};
  reset_board();
  warm_up<TestType>();
  const leak_check leaks;
  const std::vector<kill_order> items = orders();
  const parallel::options opts{.chunksize = 1};
  for_each_mode_of_three<TestType>([&](auto& runner) {
    const std::uint64_t start = now_ns();
    {
      INFO("verb: map");
      CHECK_THROWS_AS(
          [&] {
            try {
              (void)runner.map(kill_each_other, items, opts);
            } catch (const parallel::worker_died& e) {
              check_died(e);
              throw;
            }
          }(),
          parallel::worker_died);
      CHECK(runner.map(square, numbers(30)) == squares(30));
    }
    {
      INFO("verb: imap");
      std::vector<int> seen;
      CHECK_THROWS_AS(
          [&] {
            for (int r : runner.imap(kill_each_other, items, opts)) seen.push_back(r);
          }(),
          parallel::worker_died);
      const std::vector<int> before = squares(first_killer);
      REQUIRE(seen.size() <= before.size());
      CHECK(std::equal(seen.begin(), seen.end(), before.begin()));
    }
    {
      INFO("verb: imap_unordered");
      std::vector<int> seen;
      CHECK_THROWS_AS(
          [&] {
            for (int r : runner.imap_unordered(kill_each_other, items, opts)) seen.push_back(r);
          }(),
          parallel::worker_died);
      check_true_results(seen);
    }
    if constexpr (requires { runner.submit(kill_each_other, kill_order{}); }) {
      INFO("verb: submit");
      std::vector<parallel::future<int>> futures;
      for (const kill_order& order : items)
        futures.push_back(runner.submit(kill_each_other, order));
      int died = 0;
      for (std::size_t i = 0; i < futures.size(); ++i) {
        INFO("future " << i);
        try {
          const int r = futures[i].get();
          CHECK((i < first_killer || i > last_killer));  // a killer never returns
          CHECK(r == static_cast<int>(i * i));
        } catch (const parallel::worker_died& e) {
          check_died(e);
          ++died;
        }
      }
      CHECK(died >= 2);  // the killers' own calls at least
      CHECK(runner.submit(square, 7).get() == 49);
    }
    CHECK(runner.map(square, numbers(30)) == squares(30));
    INFO("every verb, and the recovery, in " << ms_since(start) << " ms");
  });
  leaks.verify();
}

#endif  // !_WIN32
