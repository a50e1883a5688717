// Soak: 1e6 tasks through 1000 pool lifecycles of each start method (fork, spawn, forkserver)
// leave the descriptors, the children and the memory of the caller where they were.
//
// Each lifecycle builds a pool of 2, maps 1000 items through it and destroys it. Descriptors
// and children must be exactly as before; the mappings and the resident memory, measured once
// the first tenth of the lifecycles has warmed the allocator and the thread-stack cache, may not
// grow by more than a few entries and 8 MiB (a leaked arena, socket buffer or stack per
// lifecycle would be hundreds). Sanitizer builds run 50 lifecycles per method (a spawned
// sanitizer build takes ~100 ms to start) and skip the memory figures, which their runtimes
// inflate; LeakSanitizer checks the heap at exit there.
//
// The longer soak of the README: PARALLEL_SOAK_LIFECYCLES=20000 parallel_tests "[soak]".
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "../catch.hpp"
#include "../test_support.hpp"
#include "fault_support.hpp"

#if !defined(_WIN32)

namespace {

using namespace fault_support;
using namespace std::chrono_literals;
using test_support::watchdog;

int lifecycles_per_method() {
  if (const char* text = std::getenv("PARALLEL_SOAK_LIFECYCLES")) {
    const int n = std::atoi(text);
    if (n > 0) return n;
  }
  return test_support::under_sanitizer ? 50 : 1000;
}

/// Resident memory of this process in bytes (/proc/self/statm).
long resident_bytes() {
  std::ifstream in("/proc/self/statm");
  long size = 0;
  long resident = 0;
  in >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

/// The number of memory mappings of this process.
int mappings() {
  std::ifstream in("/proc/self/maps");
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

template <class Start>
void soak() {
  const int lifecycles = lifecycles_per_method();
  constexpr int items = 1000;
  const std::vector<int> xs = numbers(items);
  long expected = 0;
  for (int x : xs) expected += static_cast<long>(x) * 3;

  const auto lifecycle = [&](int round) {
    parallel::process_pool<Start> pool{{.workers = 2}};
    const std::vector<long> out =
        pool.map([](int x) { return static_cast<long>(x) * 3; }, xs, {.chunksize = 50});
    long sum = 0;
    for (long v : out) sum += v;
    if (sum != expected) FAIL_CHECK("lifecycle " << round << ": wrong results");
  };

  lifecycle(-1);  // starts the forkserver (a child that stays), fills caches
  const leak_check leaks;
  long warm_resident = 0;
  int warm_mappings = 0;
  const int warm_after = std::max(1, lifecycles / 10);
  for (int round = 0; round < lifecycles; ++round) {
    lifecycle(round);
    if (round + 1 == warm_after) {
      warm_resident = resident_bytes();
      warm_mappings = mappings();
    }
  }
  leaks.verify();
  if (!test_support::under_sanitizer) {
    const long grown = resident_bytes() - warm_resident;
    INFO("resident memory grew by " << grown / 1024 << " KiB over " << lifecycles - warm_after
                                    << " lifecycles");
    CHECK(grown < (8L << 20));
    INFO("mappings: " << warm_mappings << " after warm-up, " << mappings() << " at the end");
    CHECK(mappings() <= warm_mappings + 4);
  }
}

}  // namespace

// One test per start method: ctest runs them side by side (each in a process of its own, with
// its own census of descriptors, children and memory).
TEMPLATE_TEST_CASE("soak: 1e6 tasks through 1000 pool lifecycles leave nothing behind",
                   "[faults][soak][process_pool][spawn][forkserver]", parallel::start::fork,
                   parallel::start::spawn, parallel::start::forkserver) {
  watchdog guard{"soak", 600s};
  INFO(method_name<TestType>());
  reset_board();
  soak<TestType>();
}

#endif  // !_WIN32
