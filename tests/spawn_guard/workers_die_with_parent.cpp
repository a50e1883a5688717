// Spawned workers end with the program that started them, even in the middle of a task: a
// parent (a parallel::process of this program) starts a pool task that would create a file after
// 1.5 s, waits until the task runs (it says so with a file of its own; a slow machine may take
// seconds to start the worker), then ends abruptly (no destructor runs). This program waits for
// that parent, waits 2.5 s more and checks that the file never appeared. (Windows: the job
// object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE; Linux: PR_SET_PDEATHSIG.)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <parallel/parallel.hpp>
#include <string>
#include <thread>

namespace {

constexpr const char* marker_file = "workers_die_with_parent.survived";
constexpr const char* running_file = "workers_die_with_parent.running";

bool exists(const char* path) {
  FILE* in = std::fopen(path, "r");
  if (in == nullptr) return false;
  std::fclose(in);
  return true;
}

int slow_then_write(int ms) {
  if (FILE* out = std::fopen(running_file, "w")) std::fclose(out);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  if (FILE* out = std::fopen(marker_file, "w")) std::fclose(out);
  return 0;
}

void as_parent() {
  parallel::process_pool<> pool{{.workers = 1}};
  auto pending = pool.submit(slow_then_write, 1500);
  // Until the task runs (a watchdog of 20 s: the worker may be slow to start, never that slow).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!exists(running_file) && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::fflush(nullptr);
  std::_Exit(exists(running_file) ? 0 : 2);  // no destructor: the pool never ends its worker
}

}  // namespace

int main(int argc, char** argv) {
  parallel::spawn_main(argc, argv);
  std::remove(marker_file);
  std::remove(running_file);
  // The parent is a process of its own (parallel::process), so that this one outlives it.
  parallel::process parent{[](int) { as_parent(); }, 0};
  parent.join();
  std::remove(running_file);
  if (parent.exit_code() != 0) {
    std::printf("FAILED: the worker's task did not start within 20 s (parent exit code %d)\n",
                parent.exit_code());
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  if (exists(marker_file)) {
    std::remove(marker_file);
    std::printf("FAILED: a worker finished its task after its parent had ended\n");
    return 1;
  }
  std::printf("the worker ended with its parent\n");
  return 0;
}
