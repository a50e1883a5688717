// Windows has no fork(): naming start::fork in a process policy is a compile error that says
// what to use instead.
// expected-error: start::fork and start::forkserver are POSIX only
#include <parallel/parallel.hpp>
#include <vector>

int square(int x) { return x * x; }

int main(int argc, char** argv) {
  parallel::spawn_main(argc, argv);
  const std::vector<int> xs{1, 2, 3};
  return parallel::map(parallel::processes<parallel::start::fork>{}, square, xs)[0];
}
