// Windows has no fork(): a pool with start::forkserver is a compile error that says what to use
// instead.
// expected-error: start::fork and start::forkserver are POSIX only
#include <parallel/parallel.hpp>

int main(int argc, char** argv) {
  parallel::spawn_main(argc, argv);
  parallel::process_pool<parallel::start::forkserver> pool{{.workers = 2}};
  return static_cast<int>(pool.size());
}
