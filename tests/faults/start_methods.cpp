// The fault matrix on spawned and forkserver workers (the other files cover the fork modes):
// for processes<Start> per call and process_pool<Start>, and for map, imap, imap_unordered and
// (pool) submit, each fault of a task gives its documented error, a pool stays usable, and no
// descriptor, child or zombie is left.
//
//   the task throws a std exception      parallel::remote_error, type "std::out_of_range"
//   the task throws an int               parallel::remote_error, type "int"
//   raise(SIGKILL), raise(SIGSEGV)       parallel::worker_died naming the signal
//   abort(), std::terminate()            parallel::worker_died naming SIGABRT
//   _exit(3)                             parallel::worker_died naming exit code 3
//   an endless loop, options.timeout     parallel::timeout_error
//
// Spawned workers share no memory with the test: the faults are chosen by a captured number.
#include <chrono>
#include <csignal>
#include <exception>
#include <parallel/parallel.hpp>
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

constexpr int faulty_item = 5;
constexpr int item_count = 12;

enum class fault {
  std_exception,
  int_thrown,
  sigkill,
  sigsegv,
  abort_call,
  terminate,
  exit_3,
  hang
};

struct fault_case {
  fault what;
  const char* name;
  const char* expected;  // in the error's what()
};

const fault_case faults[] = {
    {fault::std_exception, "throws std::out_of_range", "std::out_of_range"},
    {fault::int_thrown, "throws an int", "raised int"},
    {fault::sigkill, "raise(SIGKILL)", "SIGKILL"},
    {fault::sigsegv, "raise(SIGSEGV)", "SIGSEGV"},
    {fault::abort_call, "abort()", "SIGABRT"},
    {fault::terminate, "std::terminate()", "SIGABRT"},
    {fault::exit_3, "_exit(3)", "exited with code 3"},
    {fault::hang, "an endless loop under options.timeout", "timeout"},
};

[[noreturn]] void endless() {
  for (;;) std::this_thread::sleep_for(1s);
}

/// The task: x * x, except at faulty_item, where it does `what`.
auto task_with(fault what) {
  return [what](int x) {
    if (x == faulty_item) {
      switch (what) {
        case fault::std_exception:
          throw std::out_of_range("item 5 is out of range");
        case fault::int_thrown:
          throw 42;
        case fault::sigkill:
          die(death::sigkill);
        case fault::sigsegv:
          die(death::sigsegv);
        case fault::abort_call:
          die(death::abort_call);
        case fault::terminate:
          std::signal(SIGABRT, SIG_DFL);
          std::terminate();
        case fault::exit_3:
          die(death::exit_3);
        case fault::hang:
          endless();
      }
    }
    return x * x;
  };
}

/// Runs call(); checks that it raised the error `c` documents.
template <class Call>
void expect_error(const fault_case& c, Call call,
                  std::size_t index = static_cast<std::size_t>(faulty_item)) {
  try {
    call();
    FAIL_CHECK("no error");
  } catch (const parallel::remote_error& e) {
    INFO("remote_error: " << e.what());
    CHECK((c.what == fault::std_exception || c.what == fault::int_thrown));
    CHECK(contains(e.what(), c.expected));
    CHECK(e.index() == index);
  } catch (const parallel::timeout_error& e) {
    INFO("timeout_error: " << e.what());
    CHECK(c.what == fault::hang);
  } catch (const parallel::worker_died& e) {
    INFO("worker_died: " << e.what());
    CHECK(c.what != fault::std_exception);
    CHECK(c.what != fault::int_thrown);
    CHECK(c.what != fault::hang);
    CHECK(contains(e.what(), c.expected));
  }
}

/// Every verb of `runner` (a pool, or a per-call runner) against every fault.
template <class Runner>
void check_matrix(Runner&& runner, bool pool) {
  const std::vector<int> xs = numbers(item_count);
  const parallel::options opts{.chunksize = 1, .timeout = 300ms};
  for (const fault_case& c : faults) {
    INFO("fault: " << c.name);
    const auto f = task_with(c.what);
    {
      INFO("verb: map");
      expect_error(c, [&] { (void)runner.map(f, xs, opts); });
    }
    {
      INFO("verb: imap");
      expect_error(c, [&] {
        for (int r : runner.imap(f, xs, opts)) (void)r;
      });
    }
    {
      INFO("verb: imap_unordered");
      expect_error(c, [&] {
        for (int r : runner.imap_unordered(f, xs, opts)) (void)r;
      });
    }
    if constexpr (requires { runner.submit(f, 0); }) {
      INFO("verb: submit");
      // A submitted call has no options: the endless loop is left to the map above.
      if (c.what != fault::hang)
        expect_error(
            c, [&] { (void)runner.submit(f, faulty_item).get(); },
            parallel::remote_error::no_index);  // a submitted call is no item
    }
    if (pool) CHECK(runner.map(task_with(c.what), numbers(faulty_item)) == squares(faulty_item));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("faults: the fault matrix on spawned and forkserver workers",
                   "[faults][spawn][forkserver]", parallel::start::spawn,
                   parallel::start::forkserver) {
  watchdog guard{"faults: matrix on spawn and forkserver", 300s};
  warm_up<TestType>();
  const leak_check leaks;
  {
    INFO(method_name<TestType>() << ": processes<Start> per call");
    check_matrix(per_call_of<TestType>{}, false);
  }
  {
    INFO(method_name<TestType>() << ": process_pool<Start>");
    pool_of<TestType> pool{{.workers = 2}};
    check_matrix(pool, true);
  }
  leaks.verify();
}

#endif  // !_WIN32
