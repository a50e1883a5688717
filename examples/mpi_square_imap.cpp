// mpi_square_imap: Pool.map of a square and an imap over parameter dicts, across the ranks of
// an MPI job. Run it with mpirun (as root add --allow-run-as-root; more ranks than cores needs
// --oversubscribe):
//
//   mpirun -np 3 ./example_mpi_square_imap
//
// Where Python turns to another library (dask) to scale up to a cluster of machines, here the
// same verbs run on MPI ranks: rank 0 runs main, the other ranks run the tasks. Pool.map:
//
//   with Pool() as pool:
//       squares = pool.map(square, [1, 2, 3, 4, 5])   # [1, 4, 9, 16, 25]
//
// and imap over parameter dicts with a tqdm bar:
//
//   params = ({'param1': x, 'param2': 15} for x in X_values)
//   for res in tqdm(p.imap(function_to_parallelize, params), total=MAX_COUNT):
//       print(res['sum'])
//
// parallel::mpi_main(argc, argv) is the first statement of main, the twin of spawn_main: on
// ranks other than 0 it serves tasks and never returns. `square` and function_to_parallelize
// cross by name (every rank runs this executable); the params struct and the result dict cross
// through parallel::codec. With a single rank (a plain ./example_mpi_square_imap), rank 0 runs
// the tasks itself.
#include <cstddef>
#include <iostream>
#include <map>
#include <parallel/mpi.hpp>
#include <parallel/parallel.hpp>
#include <ranges>
#include <set>
#include <string>
#include <vector>

#include "python_style.hpp"

using dict = std::map<std::string, int>;

struct params {
  int param1;
  int param2;
};

int square(int x) { return x * x; }

dict function_to_parallelize(const params& p) {
  dict result;
  result["sum"] = p.param1 + p.param2;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  result["rank"] = rank;  // which rank ran it, to show the work spread
  return result;
}

int main(int argc, char** argv) {
  parallel::mpi_main(argc, argv);  // ranks 1.. serve here; rank 0 goes on
  examples::checker checks;
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  std::cout << "MPI job of " << ranks << " rank(s)\n";

  // Pool().map(square, numbers).
  {
    const std::vector<int> numbers{1, 2, 3, 4, 5};
    const std::vector<int> squares = parallel::map(parallel::mpi{}, square, numbers);
    std::cout << examples::py_list(squares) << '\n';
    checks.equal(squares, {1, 4, 9, 16, 25}, "map(mpi{}, square, [1..5])");
  }

  // imap over a generator of parameter dicts, in order, with a progress bar.
  {
    const std::vector<int> x_values{10, 22, 35, 4, 532, 12, 42, 53, 23};
    auto param_gen = x_values | std::views::transform([](int x) { return params{x, 15}; });
    std::vector<int> sums;
    std::set<int> used;
    for (dict& res : parallel::imap(parallel::mpi{}, function_to_parallelize, param_gen,
                                    {.chunksize = 1, .progress = parallel::progress_bar()})) {
      std::cout << res["sum"] << '\n';
      sums.push_back(res["sum"]);
      used.insert(res["rank"]);
    }
    std::vector<int> expected;
    for (int x : x_values) expected.push_back(x + 15);
    checks.equal(sums, expected, "imap(mpi{}, function_to_parallelize, params) in order");
    // Usually every serving rank ran some; a rank still starting up when the tasks went out
    // may have run none (scheduling is dynamic), so this is shown, not checked.
    std::cout << "ranks that ran tasks: " << used.size() << " of " << (ranks > 1 ? ranks - 1 : 1)
              << '\n';
    checks.that(ranks == 1 || !used.contains(0), "rank 0 only drives when other ranks serve");
  }
  return checks.exit_code();
}
