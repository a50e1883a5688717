// Policies (policy.hpp): how a worker count is resolved (0 = all cores, n, -n = all but n,
// at least 1), that sequential is the plain in-order loop on the caller's thread, and that
// threads{.workers = n} runs on at most n pool threads besides the caller.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <parallel/parallel.hpp>
#include <set>
#include <thread>
#include <vector>

#include "catch.hpp"

#if defined(__linux__)
#include <sched.h>
#endif

namespace {

using namespace std::chrono_literals;

/// The cores this process may run on, as `nproc` counts them (the affinity mask on Linux).
std::size_t all_cores() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return static_cast<std::size_t>(CPU_COUNT(&set));
#endif
  const unsigned reported = std::thread::hardware_concurrency();
  return reported == 0 ? 1 : reported;
}

std::vector<int> numbers(int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(i);
  return out;
}

/// The distinct threads that ran f over 200 items of ~1 ms each, one item per task.
template <class Policy>
std::set<std::thread::id> threads_used(Policy policy) {
  std::mutex mutex;
  std::set<std::thread::id> ids;
  (void)parallel::map(
      policy,
      [&](int x) {
        std::this_thread::sleep_for(1ms);
        std::lock_guard lock{mutex};
        ids.insert(std::this_thread::get_id());
        return x;
      },
      numbers(200), parallel::options{.chunksize = 1});
  return ids;
}

}  // namespace

TEST_CASE("policy: worker counts resolve to thread_pool::size()", "[policy]") {
  const std::size_t cores = all_cores();
  CAPTURE(cores);
  REQUIRE(parallel::thread_pool{0}.size() == cores);
  REQUIRE(parallel::thread_pool{}.size() == cores);
  REQUIRE(parallel::thread_pool{1}.size() == 1);
  REQUIRE(parallel::thread_pool{3}.size() == 3);
  REQUIRE(parallel::thread_pool{-1}.size() == std::max<std::size_t>(1, cores - 1));
  REQUIRE(parallel::thread_pool{-static_cast<int>(cores)}.size() == 1);
  REQUIRE(parallel::thread_pool{-1000}.size() == 1);
}

TEST_CASE("policy: threads{} means all cores, and sequential{} is an empty tag", "[policy]") {
  REQUIRE(parallel::threads{}.workers == 0);
  constexpr parallel::threads two{.workers = 2};
  static_assert(two.workers == 2);
  static_assert(std::is_empty_v<parallel::sequential>);
  const parallel::options defaults{};
  REQUIRE(defaults.chunksize == 0);
  REQUIRE(defaults.max_in_flight == 0);
  REQUIRE_FALSE(static_cast<bool>(defaults.progress));
  REQUIRE(defaults.timeout.count() == 0);
}

TEST_CASE("policy: sequential runs in input order on the calling thread", "[policy]") {
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<int> order;
  bool all_on_caller = true;
  const auto out = parallel::map(
      parallel::sequential{},
      [&](int x) {
        all_on_caller = all_on_caller && std::this_thread::get_id() == caller;
        order.push_back(x);
        return -x;
      },
      numbers(1000));
  REQUIRE(all_on_caller);
  REQUIRE(order == numbers(1000));
  REQUIRE(out.size() == 1000);
  REQUIRE(out[999] == -999);

  order.clear();
  for (int& v : parallel::imap(
           parallel::sequential{},
           [&](int x) {
             order.push_back(x);
             return x;
           },
           numbers(50))) {
    REQUIRE(v == order.back());  // computed just before it is yielded, in order
  }
  REQUIRE(order == numbers(50));
}

TEST_CASE("policy: threads{.workers = n} uses at most n workers besides the caller", "[policy]") {
  const std::thread::id caller = std::this_thread::get_id();
  for (int workers : {1, 2}) {
    CAPTURE(workers);
    std::set<std::thread::id> used = threads_used(parallel::threads{.workers = workers});
    const std::size_t besides_caller = used.size() - used.count(caller);
    CHECK(besides_caller >= 1);  // the pool did run something
    CHECK(besides_caller <= static_cast<std::size_t>(workers));
  }
  // threads{.workers = 2} really spreads 200 sleeping items over more than one thread.
  CHECK(threads_used(parallel::threads{.workers = 2}).size() >= 2);
}
