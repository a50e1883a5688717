// A shared library the test program is linked with (libparallel_test_module.so): functions and
// lambdas that live in a module other than the executable, to test functions in shared
// libraries. The library uses parallel itself, so the lambdas below and the templates that
// ship them are compiled into the library, not into the test program.
#pragma once

#include <parallel/parallel.hpp>
#include <vector>

namespace test_module {

/// A plain function of the library.
int triple(int x);

/// parallel::map over spawned workers, called from inside the library with a lambda of the
/// library that captures `factor`.
std::vector<int> spawn_scaled(const std::vector<int>& xs, int factor);

/// The same on a pool the caller owns (any start method), from inside the library.
std::vector<int> pool_scaled(parallel::process_pool<parallel::start::forkserver>& pool,
                             const std::vector<int>& xs, int factor);

}  // namespace test_module
