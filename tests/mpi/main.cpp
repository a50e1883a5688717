// Catch2's runner for the MPI tests: parallel::mpi_main first, so that ranks other than 0
// serve tasks (and never reach the session), then the tests on rank 0.
#define CATCH_CONFIG_RUNNER
#include <parallel/mpi.hpp>

#include "../catch.hpp"

int main(int argc, char* argv[]) {
  parallel::mpi_main(argc, argv);
  return Catch::Session().run(argc, argv);
}
