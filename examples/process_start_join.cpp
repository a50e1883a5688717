// process_start_join: start a child process that runs one function, wait for it with join().
//
// Mirrors Python's Process start and join:
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
// which prints, on Linux (fork): Before defining mp_func / Waiting for mp_func to end /
// Starting mp_func / Finishing mp_func; and a task() that prints before and after sleeping
// 0.5 s, two processes p1 and p2 started and then joined, a timer, then the same with ten
// processes:
//
//   def task():
//       print('Sleeping for 0.5 seconds')
//       time.sleep(0.5)
//       print('Finished sleeping')
//   if __name__ == "__main__":
//       start_time = time.perf_counter()
//       p1 = multiprocessing.Process(target=task)
//       p2 = multiprocessing.Process(target=task)
//       p1.start()
//       p2.start()
//       p1.join()
//       p2.join()
//       finish_time = time.perf_counter()
//       print(f"Program finished in {finish_time-start_time} seconds")
//
// parallel::process starts on construction (Process(...) and start() in one), join() waits and
// exit_code() is Python's exitcode. The child is a fork: it starts at the constructor with a
// copy of the parent's memory, so "Before defining mp_func" is printed once, as on Linux.
// Without join(), the Python version prints the time before the processes have run; here the
// destructor joins, so a process cannot outlive its scope unnoticed. Sleeps are a tenth of the
// Python ones (100 ms for 1 s, 50 ms for 0.5 s).
#include <chrono>
#include <iomanip>
#include <iostream>
#include <parallel/parallel.hpp>
#include <thread>
#include <vector>

#include "python_style.hpp"

using namespace std::chrono_literals;

constexpr auto mp_func_sleep = 100ms;
constexpr auto task_sleep = 50ms;

// std::endl, not '\n': parent and children share the terminal (or pipe), and each line should
// appear when it is printed, not when its process flushes at the end.
void mp_func() {
  std::cout << "Starting mp_func" << std::endl;
  std::this_thread::sleep_for(mp_func_sleep);
  std::cout << "Finishing mp_func" << std::endl;
}

void task() {
  std::cout << "Sleeping for 0.5 seconds" << std::endl;
  std::this_thread::sleep_for(task_sleep);
  std::cout << "Finished sleeping" << std::endl;
}

void print_finished_in(double seconds) {
  std::cout << "Program finished in " << std::setprecision(6) << seconds << " seconds\n";
}

int main() {
  examples::checker checks;

  // mp_func in a child process, started, then joined.
  std::cout << "Before defining mp_func" << std::endl;
  {
    examples::stopwatch started_at;
    parallel::process p{mp_func};  // p = mp.Process(target=mp_func); p.start()
    std::cout << "Waiting for mp_func to end" << std::endl;
    p.join();
    checks.equal(p.exit_code(), 0, "mp_func's process exit code");
    checks.that(started_at.seconds() >= 0.1, "join() waited for mp_func's 100 ms sleep");
  }

  // Two processes, started, then joined, then the timer.
  {
    examples::stopwatch start_time;
    parallel::process p1{task};
    parallel::process p2{task};
    p1.join();
    p2.join();
    const double seconds = start_time.seconds();
    print_finished_in(seconds);
    checks.that(p1.exit_code() == 0 && p2.exit_code() == 0, "p1 and p2 exit codes are 0");
    checks.that(seconds >= 0.05, "join() waited for the 50 ms sleeps");
  }

  // Ten processes. They sleep side by side: well under ten sleeps in a row.
  {
    examples::stopwatch start_time;
    std::vector<parallel::process> processes;
    for (int i = 0; i < 10; ++i) processes.emplace_back(task);
    for (parallel::process& p : processes) p.join();
    const double seconds = start_time.seconds();
    print_finished_in(seconds);
    bool all_zero = true;
    for (parallel::process& p : processes) all_zero = all_zero && p.exit_code() == 0;
    checks.that(all_zero, "all ten exit codes are 0");
    checks.that(seconds >= 0.05 && seconds < 0.5, "ten 50 ms sleeps overlap (less than 0.5 s)");
  }

  return checks.exit_code();
}
