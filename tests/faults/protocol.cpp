// A worker breaks the protocol: its task writes garbage, a truncated frame, or well-formed
// frames the caller never expects into the worker's channel, or closes the channel and goes on
// running. The call ends at once with parallel::error ("protocol error") or worker_died, never
// hangs and never trusts the bytes; the workers stay usable, and nothing is left behind. For
// fork, spawn and forkserver workers, per call and on a pool. "At once" (the README says within a
// second; detection takes a few ms) is checked against a healthy call of the same shape in the
// same run (test_support.hpp): the sabotaged tasks would run for a minute.
//
// The channel is found from inside the worker: the only AF_UNIX socket a worker of these tests
// has (the library closes the other workers' channels in a new worker).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <parallel/parallel.hpp>
#include <string>
#include <typeinfo>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;
namespace ipc = parallel::detail::ipc;

constexpr int bad_item = 3;
constexpr int item_count = 10;
constexpr long sabotaged_ms = 60'000;  // how long a sabotaged task runs on, when nothing ends it

int square(int x) { return x * x; }

/// Records this worker's pid (so that the test can end it if the caller does not), then writes
/// to its channel.
void write_to_channel(const void* bytes, std::size_t size) {
  shared_board().died_pid = static_cast<int>(::getpid());
  for (int fd : unix_sockets()) write_fully(fd, bytes, size);
}

/// 64 bytes that are no frame header (0xAB is not the magic's first byte).
int garbage(int x) {
  if (x == bad_item) {
    std::array<unsigned char, 64> junk;
    junk.fill(0xAB);
    write_to_channel(junk.data(), junk.size());
    sleep_ms(sabotaged_ms);
  }
  return x * x;
}

/// The first 16 bytes of a well-formed result header, then the worker exits cleanly.
int truncated_frame(int x) {
  if (x == bad_item) {
    const auto header = ipc::encode_header(ipc::frame_type::result, ipc::frame_flags::none, 1, 8);
    write_to_channel(header.data(), header.size() / 2);
    ::_exit(0);
  }
  return x * x;
}

/// A well-formed frame of a type a worker never sends (a task frame), then nothing.
int unexpected_frame_type(int x) {
  if (x == bad_item) {
    const auto header = ipc::encode_header(ipc::frame_type::task, ipc::frame_flags::none, 1, 0);
    write_to_channel(header.data(), header.size());
    sleep_ms(sabotaged_ms);
  }
  return x * x;
}

/// A well-formed, empty result frame for a task this worker was never given.
int result_of_unknown_task(int x) {
  if (x == bad_item) {
    const auto header =
        ipc::encode_header(ipc::frame_type::result, ipc::frame_flags::none, 0xDEADBEEF, 0);
    write_to_channel(header.data(), header.size());
    sleep_ms(sabotaged_ms);
  }
  return x * x;
}

/// A well-formed result header for a task this worker was never given, announcing 512 GiB,
/// then 10 bytes and silence (the task sleeps).
int huge_result_of_unknown_task(int x) {
  if (x == bad_item) {
    const auto header = ipc::encode_header(ipc::frame_type::result, ipc::frame_flags::none,
                                           0xDEADBEEF, std::uint64_t{1} << 39);
    write_to_channel(header.data(), header.size());
    const std::array<unsigned char, 10> some{};
    write_to_channel(some.data(), some.size());
    sleep_ms(sabotaged_ms);
  }
  return x * x;
}

/// Closes the channel and keeps running.
int close_channel(int x) {
  if (x == bad_item) {
    shared_board().died_pid = static_cast<int>(::getpid());
    for (int fd : unix_sockets()) ::close(fd);
    sleep_ms(sabotaged_ms);
  }
  return x * x;
}

struct sabotage {
  int (*task)(int);
  const char* name;
  bool protocol_error;  // false: worker_died, saying what happened
  const char* says;
};

const sabotage sabotages[] = {
    {garbage, "64 bytes of garbage", true, "bad magic"},
    {truncated_frame, "half a header, then _exit(0)", true, "truncated frame"},
    {unexpected_frame_type, "a task frame from a worker", true, "task frame"},
    {result_of_unknown_task, "a result for a task it was never given", true, "not running"},
    {close_channel, "the channel closed, the worker still running", false, "closed its channel"},
};

/// Checks the error of a sabotaged call that took `took_ms`, where a healthy call of the same
/// shape took `healthy_ms`.
void check_error(const sabotage& s, const parallel::error& e, double took_ms, double healthy_ms) {
  INFO(s.name << ": " << typeid(e).name() << ": " << e.what());
  check_at_once("the sabotaged call ended", took_ms, healthy_ms);
  CHECK(dynamic_cast<const parallel::remote_error*>(&e) == nullptr);
  CHECK(dynamic_cast<const parallel::timeout_error*>(&e) == nullptr);
  if (s.protocol_error) {
    CHECK(contains(e.what(), "protocol error"));
    CHECK(dynamic_cast<const parallel::worker_died*>(&e) == nullptr);
  } else {
    CHECK(dynamic_cast<const parallel::worker_died*>(&e) != nullptr);
  }
  CHECK(contains(e.what(), s.says));
  CHECK((contains(e.what(), "item " + std::to_string(bad_item)) ||
         contains(e.what(), "while running a task")));
}

// A safety net, not the expectation: a call the library does not end by itself still ends
// (as timeout_error, which fails check_error) instead of hanging the test. Tens of seconds: a
// loaded machine never reaches it in a call that works.
constexpr auto safety_timeout = 20'000ms;

}  // namespace

TEMPLATE_TEST_CASE(
    "faults: a worker that breaks the protocol fails map with parallel::error at once",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: protocol errors, map", 120s};
  warm_up<TestType>();
  const leak_check leaks;
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    // The slowest healthy call so far: the first (workers starting), then each recovery.
    double healthy_ms = time_ms([&] {
      CHECK(runner.map(square, items, {.chunksize = 1, .timeout = safety_timeout}) ==
            squares(item_count));
    });
    for (const sabotage& s : sabotages) {
      INFO("the task writes " << s.name);
      const std::uint64_t start = now_ns();
      bool raised = false;
      try {
        (void)runner.map(s.task, items, {.chunksize = 1, .timeout = safety_timeout});
      } catch (const parallel::error& e) {
        raised = true;
        check_error(s, e, ms_since(start), healthy_ms);
      }
      CHECK(raised);
      healthy_ms = std::max(
          healthy_ms, time_ms([&] { CHECK(runner.map(square, items) == squares(item_count)); }));
    }
  });
  leaks.verify();
}

TEMPLATE_TEST_CASE(
    "faults: a worker that breaks the protocol fails imap and imap_unordered, after true results",
    "[faults][processes][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: protocol errors, imap", 120s};
  warm_up<TestType>();
  const leak_check leaks;
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    const double healthy_ms = time_ms([&] {
      std::vector<int> all;
      for (int r : runner.imap(square, items, {.chunksize = 1, .timeout = safety_timeout}))
        all.push_back(r);
      CHECK(all == squares(item_count));
    });
    for (const sabotage& s : sabotages) {
      INFO("the task writes " << s.name);
      const std::uint64_t start = now_ns();
      std::vector<int> seen;
      bool raised = false;
      try {
        for (int r : runner.imap(s.task, items, {.chunksize = 1, .timeout = safety_timeout}))
          seen.push_back(r);
      } catch (const parallel::error& e) {
        raised = true;
        check_error(s, e, ms_since(start), healthy_ms);
      }
      CHECK(raised);
      CHECK(seen == squares(bad_item));
      // imap_unordered: results in any order, each a true one, then the same error.
      seen.clear();
      raised = false;
      const std::uint64_t unordered_start = now_ns();
      try {
        for (int r :
             runner.imap_unordered(s.task, items, {.chunksize = 1, .timeout = safety_timeout}))
          seen.push_back(r);
      } catch (const parallel::error& e) {
        raised = true;
        check_error(s, e, ms_since(unordered_start), healthy_ms);
      }
      CHECK(raised);
      for (int r : seen) CHECK(r != bad_item * bad_item);
    }
  });
  leaks.verify();
}

TEMPLATE_TEST_CASE("faults: a submitted call that breaks the protocol fails its own future only",
                   "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: protocol errors, submit", 120s};
  reset_board();
  warm_up<TestType>();
  const std::vector<int> before = descendants();
  pool_of<TestType> pool{{.workers = 2}};
  // The same calls, all healthy (the first of them waits for the workers to start).
  const double healthy_ms = time_ms([&] {
    std::vector<parallel::future<int>> futures;
    for (int i = 0; i < item_count; ++i) futures.push_back(pool.submit(square, i));
    for (int i = 0; i < item_count; ++i) CHECK(futures[static_cast<std::size_t>(i)].get() == i * i);
  });
  for (const sabotage& s : sabotages) {
    INFO("the task writes " << s.name);
    std::vector<parallel::future<int>> futures;
    const std::uint64_t start = now_ns();
    for (int i = 0; i < item_count; ++i) futures.push_back(pool.submit(s.task, i));
    if (futures[bad_item].wait_for(safety_timeout) != std::future_status::ready) {
      // submit has no timeout: end the workers from here, or the pool would wait for them.
      FAIL_CHECK("the sabotaged call did not end within 20 s");
      for (int pid : descendants())
        if (std::find(before.begin(), before.end(), pid) == before.end()) ::kill(pid, SIGKILL);
    }
    bool raised = false;
    try {
      (void)futures[bad_item].get();
    } catch (const parallel::error& e) {
      raised = true;
      check_error(s, e, ms_since(start), healthy_ms);
    }
    CHECK(raised);
    for (int i = 0; i < item_count; ++i) {
      if (i == bad_item) continue;
      INFO("future " << i);
      CHECK(futures[static_cast<std::size_t>(i)].get() == i * i);
    }
  }
}

// A header is checked (magic, version, checksum, type, flags, length limit) as soon as its 32
// bytes arrive; whether the frame fits the conversation (a result for the task the worker runs)
// must be known then too, not after a payload that may never come.
TEMPLATE_TEST_CASE("faults: a result header for a task never given fails at once, payload or not",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: forged result header", 120s};
  const sabotage forged{huge_result_of_unknown_task,
                        "a 512 GiB result header for a task it was never given", true,
                        "protocol error"};
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    const double healthy_ms = time_ms([&] {
      CHECK(runner.map(square, items, {.chunksize = 1, .timeout = safety_timeout}) ==
            squares(item_count));
    });
    const std::uint64_t start = now_ns();
    bool raised = false;
    try {
      (void)runner.map(forged.task, items, {.chunksize = 1, .timeout = safety_timeout});
    } catch (const parallel::error& e) {
      raised = true;
      check_error(forged, e, ms_since(start), healthy_ms);
    }
    CHECK(raised);
    CHECK(runner.map(square, items) == squares(item_count));
  });
}

#endif  // !_WIN32
