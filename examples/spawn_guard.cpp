// spawn_guard: what runs twice when workers are spawned, and the guard that stops the rest.
//
// Mirrors Python's Process start and join, and how it differs between Linux and Windows:
//
//   import multiprocessing as mp
//   from time import sleep
//   print('Before defining mp_func')
//   def mp_func():
//       print('Starting mp_func')
//       sleep(1)
//       print('Finishing mp_func')
//   if __name__ == '__main__':
//       p = mp.Process(target=mp_func)
//       p.start()
//       print('Waiting for mp_func to end')
//       p.join()
//
// On Windows (spawn) Python prints "Before defining mp_func" twice: the child is a new
// interpreter that imports the main module again, top to bottom, and only the
// `if __name__ == '__main__':` block keeps it from starting processes of its own (forgotten, it
// raises "An attempt has been made to start a new process before the current process has
// finished its bootstrapping phase").
//
// A spawned worker here is this executable started again. What runs again is what runs before
// main: the constructors of global objects, such as `announce` below, which plays the module's
// top-level print. main itself begins with parallel::spawn_main(argc, argv), the C++ form of the
// guard: in a spawned worker it never returns (the worker runs tasks and exits), in a normal run
// it returns at once. So the output is, as on Windows:
//
//   Before defining mp_func        <- this process
//   Waiting for mp_func to end
//   Before defining mp_func        <- the spawned worker, before its main
//   Starting mp_func
//   Finishing mp_func
//
// (the last three from the worker, whose order against "Waiting" is up to the scheduler). A
// program that forgets spawn_main gets parallel::spawn_error naming it, in the parent within 5 s,
// never a recursion; tests/spawn_guard/ checks that. With start::fork nothing runs twice.
#include <chrono>
#include <cstdio>
#include <parallel/parallel.hpp>
#include <random>
#include <thread>

namespace {

constexpr auto one_second = std::chrono::milliseconds(100);  // Python's sleep(1), scaled

/// Set by the global constructor below, in every process that runs it.
bool top_level_ran = false;

/// Drawn anew in every process: tells this process from a worker on every platform.
const unsigned this_process = std::random_device{}() | 1u;

/// The module's top-level statement: a global object constructed before main.
struct top_level_print {
  top_level_print() {
    std::printf("Before defining mp_func\n");
    std::fflush(stdout);
    top_level_ran = true;
  }
} const announce;

/// Prints as the Python mp_func does, and tells the caller where it ran: the process's token,
/// or 0 when that process had not run the top-level print.
unsigned mp_func() {
  std::printf("Starting mp_func\n");
  std::this_thread::sleep_for(one_second);
  std::printf("Finishing mp_func\n");
  std::fflush(stdout);
  return top_level_ran ? this_process : 0u;
}

}  // namespace

int main(int argc, char* argv[]) {
  parallel::spawn_main(argc, argv);  // if __name__ == '__main__':

  parallel::process_pool<parallel::start::spawn> pool{{.workers = 1}};  // mp.Process(target=...)
  parallel::future<unsigned> done = pool.submit(mp_func);               // p.start()
  std::printf("Waiting for mp_func to end\n");
  std::fflush(stdout);
  const unsigned worker = done.get();  // p.join()

  // Checks: mp_func ran in another process, which had run the top-level print itself.
  if (worker == 0 || worker == this_process) {
    std::fprintf(stderr,
                 "spawn_guard: mp_func ran %s, expected a spawned worker that ran the top-level "
                 "print\n",
                 worker == 0 ? "where the top-level print had not run" : "in this process");
    return 1;
  }
  return 0;
}
