// process_pool_hooks: each worker process opens its connection once, with arguments, keeps it
// from task to task and closes it when the pool ends; a task that hangs is cancelled by killing
// its worker, and the pool goes on.
//
// The Python a user would write:
//
//   def init(dsn, retries):                   # initializer=init, initargs=("cache://local", 3)
//       global conn; conn = connect(dsn, retries)
//   def lookup(key):
//       return conn.get(key)
//   with Pool(2, initializer=init, initargs=("cache://local", 3)) as pool:
//       print(pool.map(lookup, [1, 2, 3, 4]))
//
// Python's Pool has no hook for a worker's end, and a task that runs cannot be cancelled
// (concurrent.futures' cancel() returns False; Pool.terminate() ends every worker).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <parallel/parallel.hpp>
#include <string>
#include <thread>
#include <vector>

#include "python_style.hpp"

namespace {

struct connection {
  std::string dsn;
  int retries = 0;
  int lookups = 0;
};

// In each worker: the initializer's arguments cross to the worker process with it.
void open_connection(const std::string& dsn, int retries) {
  connection& conn = parallel::worker_state<connection>();
  conn.dsn = dsn;
  conn.retries = retries;
}

std::string lookup(int key) {
  connection& conn = parallel::worker_state<connection>();
  ++conn.lookups;
  return conn.dsn + "/" + std::to_string(key * key);
}

// In each worker, after its last task: the report goes to a file the caller reads.
void close_connection(const std::string& report) {
  std::ofstream(report, std::ios::app)
      << ::getpid() << ' ' << parallel::worker_state<connection>().lookups << '\n';
}

int hang(const std::string& started) {
  std::ofstream(started) << ::getpid() << '\n';
  std::this_thread::sleep_for(std::chrono::minutes(10));
  return 0;
}

// True once `path` holds a line (the file exists a moment before its line is written: a worker
// killed in that moment would leave it empty).
bool written(const std::string& path) {
  const auto has_line = [&path] {
    std::error_code error;
    return std::filesystem::file_size(path, error) > 0 && !error;
  };
  for (int i = 0; i < 10'000 && !has_line(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return has_line();
}

}  // namespace

int main(int argc, char** argv) {
  parallel::spawn_main(argc, argv);
  examples::checker checks;
  const std::string base =
      (std::filesystem::temp_directory_path() /
       ("process_pool_hooks." +
        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count())))
          .string();
  const std::string report = base + ".report";
  const std::string started = base + ".started";
  std::filesystem::remove(report);
  std::filesystem::remove(started);
  std::vector<std::string> found;
  bool cancelled = false;
  std::vector<std::string> after;
  {
    parallel::process_pool<> pool{{.workers = 2,
                                   .initializer = {open_connection, "cache://local", 3},
                                   .on_exit = {close_connection, report}}};
    found = pool.map(lookup, std::vector<int>{1, 2, 3, 4});
    std::cout << examples::py_list(found) << '\n';

    parallel::future<int> stuck = pool.submit(hang, started);
    checks.that(written(started), "the hanging task started");
    cancelled = stuck.cancel(parallel::if_running::kill);  // its worker is killed and replaced
    std::cout << "cancelled the hanging task: " << (cancelled ? "True" : "False") << '\n';
    after = pool.map(lookup, std::vector<int>{5});
  }  // the pool ends here: each worker closes its connection

  long killed = 0;
  std::ifstream(started) >> killed;
  std::ifstream in(report);
  int closed = 0;
  bool killed_closed = false;
  long pid = 0;
  int lookups = 0;
  while (in >> pid >> lookups) {
    std::cout << "a worker closed its connection after " << lookups << " lookups\n";
    ++closed;
    killed_closed = killed_closed || pid == killed;
  }
  std::filesystem::remove(report);
  std::filesystem::remove(started);
  checks.equal(found, {"cache://local/1", "cache://local/4", "cache://local/9", "cache://local/16"},
               "pool.map(lookup, ...) after initializer(\"cache://local\", 3)");
  checks.that(cancelled, "cancel(if_running::kill) stopped the running task");
  checks.equal(after, {"cache://local/25"}, "the pool goes on with a new worker");
  // The workers that ended with the pool ran on_exit (the killed one's replacement too, if it
  // had started by then); the killed worker never reached it.
  checks.that(closed >= 1 && closed <= 2, "on_exit ran in the workers that ended with the pool");
  checks.that(killed != 0 && !killed_closed, "the killed worker did not run on_exit");
  return checks.exit_code();
}
