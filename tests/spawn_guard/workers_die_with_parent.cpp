// Spawned workers end with the program that started them, even in the middle of a task: a
// parent (a parallel::process of this program) starts a pool task that would create a file after
// 1.5 s, then ends abruptly (no destructor runs). This program waits for that parent, waits
// 2.5 s more and checks that the file never appeared. (Windows: the job object with
// JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE; Linux: PR_SET_PDEATHSIG.)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <parallel/parallel.hpp>
#include <string>
#include <thread>

namespace {

constexpr const char* marker_file = "workers_die_with_parent.survived";

int slow_then_write(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  if (FILE* out = std::fopen(marker_file, "w")) std::fclose(out);
  return 0;
}

void as_parent() {
  parallel::process_pool<> pool{{.workers = 1}};
  auto pending = pool.submit(slow_then_write, 1500);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the task is running
  std::fflush(nullptr);
  std::_Exit(0);  // no destructor: the pool never ends its worker itself
}

}  // namespace

int main(int argc, char** argv) {
  parallel::spawn_main(argc, argv);
  std::remove(marker_file);
  // The parent is a process of its own (parallel::process), so that this one outlives it.
  parallel::process parent{[](int) { as_parent(); }, 0};
  parent.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  if (FILE* in = std::fopen(marker_file, "r")) {
    std::fclose(in);
    std::remove(marker_file);
    std::printf("FAILED: a worker finished its task after its parent had ended\n");
    return 1;
  }
  std::printf("the worker ended with its parent\n");
  return 0;
}
