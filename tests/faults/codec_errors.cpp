// A value that fails to cross: a user's codec throws while encoding or decoding, in the caller
// (an argument's encoding, a result's decoding) or in a worker (an argument's decoding, a
// result's encoding). The failure is that item's or that call's alone, with the codec's own
// exception (in the caller) or parallel::remote_error naming it (in a worker): the others
// complete, nothing hangs, and the workers stay usable. For fork, spawn and forkserver workers,
// per call and on a pool, through map, imap, imap_unordered and submit. (A fork-per-call map
// encodes no argument: its workers read the items in place.)
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <parallel/parallel.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

namespace fault_tests {
/// A number whose decoding refuses 13 (as a type validating its input in a constructor would).
struct picky {
  int value = 0;
};
/// A number whose encoding refuses 13 (as a type that cannot write some state would).
struct touchy {
  int value = 0;
};
}  // namespace fault_tests

template <>
struct parallel::codec<fault_tests::picky> {
  static void encode(parallel::encoder& out, const fault_tests::picky& p) { out.write(p.value); }
  static fault_tests::picky decode(parallel::decoder& in) {
    const int value = in.read<int>();
    if (value == 13) throw std::domain_error("13 is not picky");
    return {value};
  }
};
static_assert(parallel::transferable<fault_tests::picky>);

template <>
struct parallel::codec<fault_tests::touchy> {
  static void encode(parallel::encoder& out, const fault_tests::touchy& t) {
    if (t.value == 13) throw std::domain_error("13 cannot be written");
    out.write(t.value);
  }
  static fault_tests::touchy decode(parallel::decoder& in) { return {in.read<int>()}; }
};
static_assert(parallel::transferable<fault_tests::touchy>);

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using fault_tests::picky;
using fault_tests::touchy;
using test_support::watchdog;

constexpr int item_count = 30;
constexpr int bad = 13;

int square(int x) { return x * x; }
int unwrap_square(picky p) { return p.value * p.value; }
int touchy_square(touchy t) { return t.value * t.value; }
picky wrap(int x) { return {x}; }
touchy wrap_touchy(int x) { return {x}; }

template <class T>
std::vector<T> wrapped_numbers(int n) {
  std::vector<T> out;
  for (int i = 0; i < n; ++i) out.push_back({i});
  return out;
}

/// Whether `Runner` ships the items it is given (a pool, or spawn/forkserver per call).
template <class Runner>
constexpr bool ships_items = !std::is_same_v<Runner, per_call>;

/// Runs call(); checks that it raised remote_error for item 13 naming the codec's exception.
template <class Call>
void expect_remote_domain_error(Call call, std::size_t index = bad) {
  try {
    call();
    FAIL_CHECK("no error");
  } catch (const parallel::remote_error& e) {
    INFO("what(): " << e.what());
    CHECK(e.type_name() == "std::domain_error");
    CHECK(e.index() == index);
  }
}

/// Runs call(); checks that it raised the codec's own std::domain_error, at once: against a
/// healthy call of the same shape that took `healthy_ms` (test_support.hpp).
template <class Call>
void expect_domain_error(Call call, double healthy_ms) {
  const std::uint64_t start = now_ns();
  CHECK_THROWS_AS(call(), std::domain_error);
  check_at_once("the call failed", ms_since(start), healthy_ms);
}

/// Each result of the values yielded so far is the next in order.
void check_prefix(const std::vector<int>& seen) {
  const std::vector<int> all = squares(item_count);
  REQUIRE(seen.size() <= all.size());
  CHECK(std::equal(seen.begin(), seen.end(), all.begin()));
}

}  // namespace

TEMPLATE_TEST_CASE("faults: an argument that fails to decode in a worker is that item's error",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: argument decoding fails", 60s};
  warm_up<TestType>();
  const leak_check leaks;
  const std::vector<picky> items = wrapped_numbers<picky>(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    using runner_type = std::remove_cvref_t<decltype(runner)>;
    if constexpr (ships_items<runner_type>) {
      {
        INFO("verb: map, chunks of 4");
        expect_remote_domain_error(
            [&] { (void)runner.map(unwrap_square, items, {.chunksize = 4}); });
      }
      {
        INFO("verb: imap");
        std::vector<int> seen;
        expect_remote_domain_error([&] {
          for (int r : runner.imap(unwrap_square, items, {.chunksize = 1})) seen.push_back(r);
        });
        CHECK(seen == squares(bad));
      }
      {
        INFO("verb: imap_unordered");
        expect_remote_domain_error([&] {
          for (int r : runner.imap_unordered(unwrap_square, items, {.chunksize = 1})) (void)r;
        });
      }
      if constexpr (requires { runner.submit(unwrap_square, picky{}); }) {
        INFO("verb: submit");
        std::vector<parallel::future<int>> futures;
        for (int i = 0; i < item_count; ++i)
          futures.push_back(runner.submit(unwrap_square, picky{i}));
        for (int i = 0; i < item_count; ++i) {
          INFO("future " << i);
          if (i == bad)
            expect_remote_domain_error([&] { (void)futures[static_cast<std::size_t>(i)].get(); },
                                       parallel::remote_error::no_index);
          else
            CHECK(futures[static_cast<std::size_t>(i)].get() == i * i);
        }
      }
      CHECK(runner.map(unwrap_square, wrapped_numbers<picky>(bad)) == squares(bad));
    }
  });
  leaks.verify();
}

TEMPLATE_TEST_CASE("faults: an argument that fails to encode fails its call with the codec's error",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: argument encoding fails", 60s};
  warm_up<TestType>();
  const leak_check leaks;
  const std::vector<touchy> items = wrapped_numbers<touchy>(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    using runner_type = std::remove_cvref_t<decltype(runner)>;
    if constexpr (ships_items<runner_type>) {
      const double healthy_ms = time_ms([&] {
        CHECK(runner.map(touchy_square, wrapped_numbers<touchy>(bad), {.chunksize = 1}) ==
              squares(bad));
      });
      {
        INFO("verb: map");
        expect_domain_error([&] { (void)runner.map(touchy_square, items, {.chunksize = 1}); },
                            healthy_ms);
      }
      {
        INFO("verb: imap");
        std::vector<int> seen;
        expect_domain_error(
            [&] {
              for (int r : runner.imap(touchy_square, items, {.chunksize = 1})) seen.push_back(r);
            },
            healthy_ms);
        check_prefix(seen);
      }
      {
        INFO("verb: imap_unordered");
        expect_domain_error(
            [&] {
              for (int r : runner.imap_unordered(touchy_square, items, {.chunksize = 1})) (void)r;
            },
            healthy_ms);
      }
      if constexpr (requires { runner.submit(touchy_square, touchy{}); }) {
        INFO("verb: submit");
        expect_domain_error([&] { (void)runner.submit(touchy_square, touchy{bad}); }, healthy_ms);
        CHECK(runner.submit(touchy_square, touchy{3}).get() == 9);
      }
      CHECK(runner.map(touchy_square, wrapped_numbers<touchy>(bad)) == squares(bad));
    }
  });
  leaks.verify();
}

TEMPLATE_TEST_CASE("faults: a result that fails to encode in a worker is that item's error",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: result encoding fails", 60s};
  warm_up<TestType>();
  const leak_check leaks;
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    {
      INFO("verb: map");
      expect_remote_domain_error([&] { (void)runner.map(wrap_touchy, items, {.chunksize = 4}); });
    }
    {
      INFO("verb: imap");
      std::vector<int> seen;
      expect_remote_domain_error([&] {
        for (const touchy& r : runner.imap(wrap_touchy, items, {.chunksize = 1}))
          seen.push_back(r.value * r.value);
      });
      CHECK(seen == squares(bad));
    }
    {
      INFO("verb: imap_unordered");
      expect_remote_domain_error([&] {
        for (const touchy& r : runner.imap_unordered(wrap_touchy, items)) (void)r;
      });
    }
    if constexpr (requires { runner.submit(wrap_touchy, 0); }) {
      INFO("verb: submit");
      expect_remote_domain_error([&] { (void)runner.submit(wrap_touchy, bad).get(); },
                                 parallel::remote_error::no_index);
      CHECK(runner.submit(wrap_touchy, 3).get().value == 3);
    }
    CHECK(runner.map(square, items) == squares(item_count));
  });
  leaks.verify();
}

TEMPLATE_TEST_CASE("faults: a result that fails to decode in the caller fails its call, at once",
                   "[faults][processes][process_pool]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"faults: result decoding fails, map", 60s};
  warm_up<TestType>();
  const leak_check leaks;
  const std::vector<int> items = numbers(item_count);
  for_each_mode<TestType>([&](auto& runner) {
    const double healthy_ms = time_ms([&] {
      CHECK(runner.map(wrap, numbers(bad), {.chunksize = 1}).size() == std::size_t{bad});
    });
    {
      INFO("verb: map");
      expect_domain_error([&] { (void)runner.map(wrap, items, {.chunksize = 1}); }, healthy_ms);
    }
    {
      INFO("verb: imap");
      std::vector<int> seen;
      expect_domain_error(
          [&] {
            for (const picky& r : runner.imap(wrap, items, {.chunksize = 1}))
              seen.push_back(r.value * r.value);
          },
          healthy_ms);
      CHECK(seen == squares(bad));
    }
    {
      INFO("verb: imap_unordered");
      expect_domain_error(
          [&] {
            for (const picky& r : runner.imap_unordered(wrap, items)) (void)r;
          },
          healthy_ms);
    }
    CHECK(runner.map(square, items) == squares(item_count));
  });
  leaks.verify();
}

TEMPLATE_TEST_CASE(
    "faults: a submitted call whose result fails to decode fails its own future only",
    "[faults][process_pool]", parallel::start::fork, parallel::start::spawn,
    parallel::start::forkserver) {
  watchdog guard{"faults: result decoding fails, submit", 60s};
  reset_board();
  warm_up<TestType>();
  const std::vector<int> before = descendants();
  auto pool = std::make_unique<pool_of<TestType>>(parallel::pool_options{.workers = 2});
  std::vector<parallel::future<picky>> futures;
  for (int i = 0; i < item_count; ++i) futures.push_back(pool->submit(wrap, i));
  bool stuck = false;
  for (int i = 0; i < item_count; ++i) {
    INFO("future " << i);
    auto& f = futures[static_cast<std::size_t>(i)];
    if (f.wait_for(stuck ? 100ms : 20s) != std::future_status::ready) {
      FAIL_CHECK("not ready after 20 s");
      stuck = true;
      continue;
    }
    if (i == bad)
      CHECK_THROWS_AS(f.get(), std::domain_error);
    else
      CHECK(f.get().value == i);
  }
  if (stuck) {
    // The pool would wait for the stuck calls when destroyed: end its workers, so that it
    // settles them, or else leave it (its workers end with this test program).
    for (int pid : descendants())
      if (std::find(before.begin(), before.end(), pid) == before.end()) ::kill(pid, SIGKILL);
    for (auto& f : futures)
      if (f.valid() && f.wait_for(20s) != std::future_status::ready) {
        (void)pool.release();
        return;
      }
    return;
  }
  CHECK(pool->map(square, numbers(item_count)) == squares(item_count));
}

#endif  // !_WIN32
