// A process pool's initializer is called in each worker with the arguments given after it
// (Python's initargs): arguments it cannot be called with are an error at compile time, which
// says what the hook does with them.
// expected-error: worker_hook: the function cannot be called with these arguments
#include <parallel/parallel.hpp>
#include <string>

void open_cache(const std::string& path, int megabytes) {
  static_cast<void>(path);
  static_cast<void>(megabytes);
}

int main() {
  parallel::process_pool<parallel::start::fork> pool{
      {.workers = 1, .initializer = {open_cache, 64, std::string("/tmp/cache")}}};
  return static_cast<int>(pool.size());
}
