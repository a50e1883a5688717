// A std::thread is a handle to a thread of this process: pool.submit cannot send it to a worker.
// expected-error: std::thread.*this type cannot cross a process boundary.*specialise
// parallel::codec
#include <parallel/parallel.hpp>
#include <thread>

int joinable(const std::thread& t) { return t.joinable() ? 1 : 0; }

int main() {
  parallel::process_pool<parallel::start::fork> pool{{.workers = 1}};
  std::thread t;
  return pool.submit(joinable, std::move(t)).get();
}
