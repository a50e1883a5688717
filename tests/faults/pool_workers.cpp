// A process_pool's workers over their life: the initializer runs once in each worker (and in
// each replacement), never in the caller, with the arguments it was given; on_exit runs once in
// each worker that ends normally (retired, or at the pool's end), not in one that died or was
// killed; an initializer that throws, or a worker that dies
// before its handshake, makes the pool's calls fail with parallel::spawn_error naming the
// cause, without a hang or a restart storm; max_tasks_per_child recycles workers under load and
// every result stays right; retired workers are reaped. All of it for every start method.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <map>
#include <parallel/parallel.hpp>
#include <set>
#include <stdexcept>
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

// In each worker: how often the initializer ran in this process. A spawned worker, or one forked
// by a forkserver, is a fresh run of this program, where it starts at 0 as in a forked one; the
// board counts the runs of every worker of every start method.
int initialized_here = 0;

void counting_initializer() {
  ++initialized_here;
  shared_board().initializer_runs.fetch_add(1);
}

void throwing_initializer() { throw std::runtime_error("no database connection"); }
void throwing_int_initializer() { throw 7; }
void exiting_initializer() { ::_exit(5); }

/// What a task saw in its worker (crosses back as its bytes).
struct sighting {
  int pid;
  int initialized;
  int value;
};

sighting look(int x) {
  sleep_ms(5);
  return {static_cast<int>(::getpid()), initialized_here, x * x};
}

int square(int x) { return x * x; }

// Hooks with arguments (Python's initializer + initargs).
void initialize_with(const std::string& name, int base) {
  initialized_here = base;
  shared_board().initializer_runs.fetch_add(1);
  shared_board().hook_sum.fetch_add(base + (name == "cache" ? 1000 : 0));
}
void count_exit(int weight) { shared_board().exit_runs.fetch_add(weight); }
void throwing_exit() { throw std::runtime_error("flush failed"); }

// Whether `count` reaches `want` within `limit`, and not more. A pool's call starts its second
// worker as soon as it has work for it, but under a sanitizer a spawned worker may still be
// starting (and not have run the initializer yet) when a short map has ended in the first one.
template <class Count>
bool reaches(const Count& count, int want, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (count.load() < want && std::chrono::steady_clock::now() < until) sleep_ms(5);
  return count.load() == want;
}

}  // namespace

TEMPLATE_TEST_CASE("faults: the pool's initializer runs once in each worker, never in the caller",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: initializer once per worker", 60s};
  INFO(method_name<TestType>());
  board& b = reset_board();
  pool_of<TestType> pool{{.workers = 2, .initializer = counting_initializer}};
  const std::vector<sighting> seen = pool.map(look, numbers(40), {.chunksize = 1});
  std::set<int> pids;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    INFO("item " << i << " ran in pid " << seen[i].pid);
    CHECK(seen[i].initialized == 1);
    CHECK(seen[i].value == static_cast<int>(i * i));
    pids.insert(seen[i].pid);
  }
  CHECK(pids.size() <= 2);
  CHECK(pids.count(static_cast<int>(::getpid())) == 0);
  CHECK(reaches(b.initializer_runs, 2, 30s));  // the forkserver itself runs no initializer either
  CHECK(initialized_here == 0);
  // A submitted call sees the initialized worker too.
  CHECK(pool.submit(look, 3).get().initialized == 1);
  CHECK(b.initializer_runs.load() == 2);
}

TEMPLATE_TEST_CASE("faults: the pool's hooks take arguments; on_exit runs as each worker ends",
                   "[faults][process_pool][hooks]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: hooks with arguments", 60s};
  INFO(method_name<TestType>());
  board& b = reset_board();
  {
    pool_of<TestType> pool{
        {.workers = 2, .initializer = {initialize_with, "cache", 7}, .on_exit = {count_exit, 1}}};
    const std::vector<sighting> seen = pool.map(look, numbers(20), {.chunksize = 1});
    for (const sighting& s : seen) CHECK(s.initialized == 7);
    CHECK(reaches(b.initializer_runs, 2, 30s));
    CHECK(b.hook_sum.load() == 2 * 1007);
    CHECK(b.exit_runs.load() == 0);  // the workers are still there
  }
  // The pool's end waited for its workers to end, each after its on_exit.
  CHECK(b.exit_runs.load() == 2);
  CHECK(initialized_here == 0);

  // A lambda capturing a number by value is a hook too.
  reset_board();
  {
    int weight = 5;  // not a constant: the lambda captures it, and its bytes cross
    pool_of<TestType> pool{{.workers = 1,
                            .initializer = [] { shared_board().initializer_runs.fetch_add(1); },
                            .on_exit = [weight] { shared_board().exit_runs.fetch_add(weight); }}};
    CHECK(pool.submit(square, 4).get() == 16);
  }
  CHECK(b.initializer_runs.load() == 1);
  CHECK(b.exit_runs.load() == 5);
}

TEMPLATE_TEST_CASE("faults: on_exit runs in retired workers, not in one that died",
                   "[faults][process_pool][hooks]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: on_exit at retirement and death", 60s};
  INFO(method_name<TestType>());
  board& b = reset_board();
  {
    pool_of<TestType> pool{{.workers = 2,
                            .max_tasks_per_child = 2,
                            .initializer = counting_initializer,
                            .on_exit = {count_exit, 1}}};
    CHECK(pool.map(square, numbers(12), {.chunksize = 1}) == squares(12));
    CHECK_THROWS_AS(pool.submit([](int) -> int { die(death::sigkill); }, 0).get(),
                    parallel::worker_died);
    CHECK(pool.submit(square, 5).get() == 25);
  }
  // Every worker that started ran on_exit as it ended, but the one killed.
  CHECK(b.initializer_runs.load() >= 7);  // 12 tasks, 2 per worker, then more
  CHECK(b.exit_runs.load() == b.initializer_runs.load() - 1);
}

TEMPLATE_TEST_CASE("faults: an on_exit that throws is reported, the pool still ends at once",
                   "[faults][process_pool][hooks]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: on_exit throws", 60s};
  INFO(method_name<TestType>());
  const std::uint64_t start = now_ns();
  {
    pool_of<TestType> pool{{.workers = 2, .on_exit = throwing_exit}};
    CHECK(pool.map(square, numbers(10)) == squares(10));
  }
  // Each worker wrote "the pool's on_exit raised std::runtime_error: flush failed" to its
  // standard error and ended: nothing waited for the grace period.
  CHECK(now_ns() - start < 20'000'000'000ull);

  // One that never returns is killed after on_exit_timeout.
  const std::uint64_t again = now_ns();
  {
    pool_of<TestType> pool{{.workers = 1,
                            .on_exit = [] { sleep_ms(600'000); },
                            .on_exit_timeout = std::chrono::milliseconds(300)}};
    CHECK(pool.submit(square, 3).get() == 9);
  }
  CHECK(now_ns() - again < 20'000'000'000ull);
}

TEMPLATE_TEST_CASE("faults: a replaced worker runs the initializer too", "[faults][process_pool]",
                   parallel::start::fork, parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: initializer in a replacement", 60s};
  INFO(method_name<TestType>());
  board& b = reset_board();
  pool_of<TestType> pool{{.workers = 2, .initializer = counting_initializer}};
  CHECK_THROWS_AS(pool.submit([](int) -> int { die(death::sigkill); }, 0).get(),
                  parallel::worker_died);
  const std::vector<sighting> seen = pool.map(look, numbers(20), {.chunksize = 1});
  std::set<int> pids;
  for (const sighting& s : seen) {
    CHECK(s.initialized == 1);
    pids.insert(s.pid);
  }
  CHECK(pids.count(b.died_pid.load()) == 0);  // the dead worker ran none of them
  CHECK(b.initializer_runs.load() == 3);      // 2 workers, and the one that replaced the dead
  CHECK(initialized_here == 0);
}

TEMPLATE_TEST_CASE("faults: an initializer that throws makes the pool's calls raise spawn_error",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: initializer throws", 60s};
  struct failing {
    void (*initializer)();
    const char* says[2];
  };
  const failing cases[] = {
      {throwing_initializer, {"std::runtime_error", "no database connection"}},
      {throwing_int_initializer, {"int", "initializer"}},
      {exiting_initializer, {"exited with code 5", "while running the pool's initializer"}},
  };
  warm_up<TestType>();
  // The same pool and calls with an initializer that works: a start of the workers and three
  // calls. A failing start may be tried again a few times before spawn_error (as when workers
  // are killed before they are ready: some five starts), so the bound allows for six.
  const double healthy_ms = time_ms([] {
    pool_of<TestType> pool{{.workers = 2, .initializer = counting_initializer}};
    CHECK(pool.map(square, numbers(10)) == squares(10));
    CHECK(pool.submit(square, 3).get() == 9);
    CHECK(pool.map(square, numbers(10)) == squares(10));
  });
  for (const failing& c : cases) {
    INFO(method_name<TestType>() << ": initializer expected to fail with: " << c.says[0]);
    reset_board();
    const leak_check leaks;
    const std::uint64_t start = now_ns();
    // The error may come from the constructor or from the first call: both are the pool's.
    std::string map_error;
    std::string submit_error;
    std::string second_error;
    try {
      pool_of<TestType> pool{{.workers = 2, .initializer = c.initializer}};
      try {
        (void)pool.map(square, numbers(10));
      } catch (const parallel::spawn_error& e) {
        map_error = e.what();
      }
      try {
        (void)pool.submit(square, 3).get();
      } catch (const parallel::spawn_error& e) {
        submit_error = e.what();
      }
      try {
        (void)pool.map(square, numbers(10));
      } catch (const parallel::spawn_error& e) {
        second_error = e.what();
      }
    } catch (const parallel::spawn_error& e) {
      map_error = submit_error = second_error = e.what();
    }
    const double took_ms = ms_since(start);
    INFO("map: " << map_error);
    INFO("submit: " << submit_error);
    INFO("second map: " << second_error);
    CHECK(contains(map_error, c.says[0]));
    CHECK(contains(map_error, c.says[1]));
    CHECK(contains(submit_error, c.says[0]));
    CHECK(contains(second_error, c.says[0]));
    check_at_once("all three failed", took_ms, 6 * healthy_ms);
    // The failed workers are reaped once the pool is gone.
    leaks.verify();
  }
  // A pool with an initializer that works, after those that failed.
  pool_of<TestType> pool{{.workers = 2, .initializer = counting_initializer}};
  CHECK(pool.map(square, numbers(10)) == squares(10));
}

TEMPLATE_TEST_CASE(
    "faults: max_tasks_per_child = 2 recycles workers under load, every result right",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: max_tasks_per_child", 120s};
  board& b = reset_board();
  warm_up<TestType>();
  const leak_check leaks;
  const std::vector<int> before = descendants();  // a forkserver, when one runs
  {
    pool_of<TestType> pool{
        {.workers = 2, .max_tasks_per_child = 2, .initializer = counting_initializer}};
    const std::vector<sighting> seen = pool.map(look, numbers(20), {.chunksize = 1});
    std::map<int, int> tasks_per_pid;
    for (std::size_t i = 0; i < seen.size(); ++i) {
      INFO("item " << i << " ran in pid " << seen[i].pid);
      CHECK(seen[i].value == static_cast<int>(i * i));
      CHECK(seen[i].initialized == 1);
      ++tasks_per_pid[seen[i].pid];
    }
    INFO(tasks_per_pid.size() << " distinct workers ran 20 tasks");
    CHECK(tasks_per_pid.size() >= 10);  // at most 2 tasks each
    for (const auto& [pid, tasks] : tasks_per_pid) {
      INFO("pid " << pid);
      CHECK(tasks <= 2);
    }
    CHECK(b.initializer_runs.load() >= static_cast<int>(tasks_per_pid.size()));

    // submit: each call is a task; calls submitted while an imap runs, as a loaded pool sees.
    std::vector<parallel::future<sighting>> futures;
    std::vector<int> streamed;
    for (int r : pool.imap(square, numbers(200), {.chunksize = 10})) {
      if (futures.size() < 10)
        futures.push_back(pool.submit(look, static_cast<int>(futures.size())));
      streamed.push_back(r);
    }
    CHECK(streamed == squares(200));
    std::map<int, int> calls_per_pid;
    for (std::size_t i = 0; i < futures.size(); ++i) {
      const sighting s = futures[i].get();
      CHECK(s.value == static_cast<int>(i * i));
      CHECK(s.initialized == 1);
      ++calls_per_pid[s.pid];
    }
    for (const auto& [pid, calls] : calls_per_pid) CHECK(calls <= 2);
    // Automatic chunks: tasks are chunks, the results are still every item's.
    CHECK(pool.map(square, numbers(1000)) == squares(1000));
    // Retired workers were reaped (a worker retired with the last results may still be ending,
    // or a zombie for a moment, until the pool's thread reaps it): soon only the pool's live
    // workers are new below this process.
    for (int pid : descendants()) {
      INFO("process " << pid << " below this one");
      CHECK(!lingering_zombie(pid));
    }
    const auto added = [&before] {
      std::size_t n = 0;
      for (int pid : descendants())
        if (std::find(before.begin(), before.end(), pid) == before.end()) ++n;
      return n;
    };
    const std::uint64_t since = now_ns();
    // One reading, checked as read: a replacement may start while a retired worker is still
    // ending, so a second reading could see one more for a moment.
    std::size_t extra = added();
    while (extra > pool.size() && ms_since(since) < 5000) {
      sleep_ms(5);
      extra = added();
    }
    CHECK(extra <= pool.size());
  }
  leaks.verify();
}

#endif  // !_WIN32
