// One failure of parallel::mpi per run, under mpirun with 3 ranks (tests/mpi/CMakeLists.txt).
// Each case checks what rank 0 gets and prints "PASS: <case>"; the ctest around it checks that
// line and mpirun's exit status.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <parallel/mpi.hpp>
#include <parallel/parallel.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

int square(int x) { return x * x; }

[[noreturn]] void fail(const std::string& what) {
  std::printf("FAIL: %s\n", what.c_str());
  std::fflush(nullptr);
  std::_Exit(1);  // not exit(): with MPI initialized, exit would finalize as if all went well
}

bool contains(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The most a call with a 200 ms timeout may take to fail, in seconds: the rule of
/// tests/test_support.hpp (no fixed wall-clock bound; ten times a healthy call of the same shape
/// timed in this run, at least 2 s), plus the timeout.
double timeout_bound() {
  const auto start = std::chrono::steady_clock::now();
  if (parallel::map(parallel::mpi{}, square, std::vector<int>{3},
                    {.timeout = std::chrono::milliseconds(200)}) != std::vector<int>{9})
    fail("a healthy call failed");
  const double healthy = seconds_since(start);
  const double bound = 0.2 + std::max(2.0, 10 * healthy);
  std::printf("a healthy call took %.3f s: the bound is %.3f s\n", healthy, bound);
  return bound;
}

void nap_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "";
  if (which == "forgotten_mpi_main") {
    // No mpi_main: every rank runs this and gets the error, none waits for another.
    try {
      (void)parallel::map(parallel::mpi{}, square, std::vector<int>{1, 2});
      fail("map ran without mpi_main");
    } catch (const parallel::error& e) {
      if (!contains(e.what(), "parallel::mpi_main(argc, argv)")) fail(e.what());
    }
    std::printf("PASS: forgotten_mpi_main\n");
    return 0;
  }

  parallel::mpi_main(argc, argv);

  if (which == "bad_frame") {
    // Item 0's task writes garbage to rank 0 on the library's channel before its result.
    try {
      (void)parallel::map(parallel::mpi{},
                          [](int x) {
                            if (x == 0) {
                              const char garbage[64] =
                                  "this is not a frame of the library, just bytes in its place";
                              MPI_Send(garbage, sizeof garbage, MPI_BYTE, 0,
                                       parallel::detail::ranks::tag_result,
                                       parallel::detail::ranks::state().comm);
                            }
                            return x;
                          },
                          std::vector<int>{0, 1, 2, 3}, {.chunksize = 1});
      fail("the bad frame was accepted");
    } catch (const parallel::error& e) {
      if (!contains(e.what(), "protocol error") || !contains(e.what(), "MPI rank")) fail(e.what());
      std::printf("caught: %s\n", e.what());
    }
    // The other rank still serves.
    if (parallel::map(parallel::mpi{}, square, std::vector<int>{4, 5}) != std::vector<int>{16, 25})
      fail("no rank served after the bad frame");
    std::printf("PASS: bad_frame\n");
    return 0;
  }

  if (which == "late_task") {
    // Overruns its 200 ms timeout and ends half a second after the bound: the call fails in
    // time, the rank is left out, and once its task ends the job can still finalize normally
    // (mpirun exits 0).
    const double bound = timeout_bound();
    const int task_ms = static_cast<int>(bound * 1000) + 500;
    const auto start = std::chrono::steady_clock::now();
    try {
      (void)parallel::map(parallel::mpi{},
                          [](int ms) {
                            nap_ms(ms);
                            return ms;
                          },
                          std::vector<int>{task_ms}, {.timeout = std::chrono::milliseconds(200)});
      fail("no timeout");
    } catch (const parallel::timeout_error& e) {
      const double took = seconds_since(start);
      std::printf("caught after %.3f s: %s\n", took, e.what());
      if (took > bound) fail("the timeout came late");
    }
    if (parallel::map(parallel::mpi{}, square, std::vector<int>{2, 3}) != std::vector<int>{4, 9})
      fail("no rank served after the timeout");
    std::this_thread::sleep_until(start + std::chrono::milliseconds(task_ms + 1000));
    (void)parallel::map(parallel::mpi{}, square, std::vector<int>{1});  // hears the late result
    std::printf("PASS: late_task\n");
    return 0;
  }

  if (which == "stuck_task") {
    // Never ends: the call fails within its timeout, the other rank still serves, and at exit
    // the stuck rank leaves its task and the job ends normally (mpirun exits 0). A watchdog of
    // 20 s, not a bound near the timeout (tests/test_support.hpp): a deadline that never fired
    // would leave the call waiting for ever.
    const double bound = 20;
    const auto start = std::chrono::steady_clock::now();
    try {
      (void)parallel::map(parallel::mpi{},
                          [](int x) {
                            for (;;) std::this_thread::sleep_for(std::chrono::milliseconds(50));
                            return x;
                          },
                          std::vector<int>{1}, {.timeout = std::chrono::milliseconds(200)});
      fail("no timeout");
    } catch (const parallel::timeout_error& e) {
      const double took = seconds_since(start);
      std::printf("caught after %.3f s: %s\n", took, e.what());
      if (took > bound) fail("the timeout came late");
      if (!contains(e.what(), "leaves it when the program ends")) fail(e.what());
    }
    if (parallel::map(parallel::mpi{}, square, std::vector<int>{6, 7}) != std::vector<int>{36, 49})
      fail("no rank served after the timeout");
    std::printf("PASS: stuck_task\n");
    std::fflush(nullptr);
    return 0;
  }

  if (which == "rank_dies") {
    // Open MPI 4.1 ends the whole job when a rank dies; mpirun must say so and exit non-zero.
    (void)parallel::map(parallel::mpi{},
                        [](int x) {
                          std::raise(SIGKILL);
                          return x;
                        },
                        std::vector<int>{1}, {.timeout = std::chrono::seconds(20)});
    fail("the map returned after a rank died");
  }

  fail("unknown case '" + which + "'");
}
