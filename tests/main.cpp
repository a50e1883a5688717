// Catch2's runner and main(), in a translation unit of their own: this file takes ~20 s to
// compile, and keeping it apart means that editing a test file recompiles only that file.
// main() begins with parallel::spawn_main: the tests of start::spawn and start::forkserver run
// this executable again as their workers. It also checks, at compile time, that this platform's
// operating-system layer keeps the contract the rest of the library calls (os_contract.hpp).
#define CATCH_CONFIG_RUNNER  // v2: this translation unit defines the runner; main() is below
#include <parallel/detail/os_contract.hpp>
#include <parallel/process_pool.hpp>

#include "catch.hpp"

int main(int argc, char* argv[]) {
  parallel::spawn_main(argc, argv);
  return Catch::Session().run(argc, argv);
}
