// compare: the C++ half of ./scripts/bench. bench/compare.py chooses the grid and runs
// this program with one --cell per workload; every cell runs as
//
//   sequential                   a plain loop in the calling thread: the baseline
//   threads                      parallel::map(parallel::threads{}, ...) on the shared pool
//   pool_fork / pool_spawn / pool_forkserver
//                                a parallel::process_pool<start::...> started once and reused
//   per_call_fork / per_call_spawn / per_call_forkserver
//                                parallel::processes<start::...>{}: workers started at each call
//   omp, tbb, std_par            OpenMP (schedule(static)), oneTBB parallel_for, and
//                                std::transform(std::execution::par) (libstdc++: on oneTBB)
// and, only where a cell's list names them (they suit some kinds only):
//   omp_dynamic                  OpenMP schedule(dynamic, 1)
//   join                         fib: parallel::join at every call
//   thread_pool                  idle: a parallel::thread_pool made for the run
//   threads_callback, threads_bar
//                                threads with options.progress: a (done, total) callable, and
//                                parallel::progress_bar (its lines go to stderr too)
//   mpi                          parallel::mpi{} (and a parallel::mpi_pool for submit): in
//                                bench_compare_mpi only, run under mpirun
//
// Cells (--cell=KIND:PARAM:N[/VARIANT,...]: with a list, only those of the variants above that
// this build has, e.g. spin:1:1000/sequential,threads,omp,tbb,std_par):
//   spin:NS:N          N items of ~NS ns of CPU each (parallel_bench::spin), uint64 -> uint64;
//                      NS rounds to the nearest spin round (~1.35 ns): spin:1 does one
//   bytes:SIZE:N       N results of SIZE bytes (std::vector<char> filled from the item)
//   square:0:N         Pool.map: x*x over a list of N ints
//   startup:0:N        the same; compare.py runs it on the per-call variants only, whose
//                      workers start and end within each call (Python: a Pool made and closed
//                      around the map)
//   slow_pow:MS:N      Pool.starmap of slow_pow(x, 2) with an MS ms sleep, 5 workers (Pool(5))
//   params:0:N         Pool.imap of a function over N parameter dicts
//                      (std::map<std::string, int>) returning a result dict
//   imap:NS:N          imap (in order) over N spin items of ~NS ns each; the peers run them
//                      as a map
//   roundtrip:0:N      N calls of x + 1, one at a time: submit(f, x).get() back to back on the
//                      pools and on threads (a parallel::thread_pool); the variant `socketpair`
//                      is the machine's floor: a raw socketpair ping-pong with a forked process
//                      that computes the same x + 1 (8 bytes each way). No per-call or peer
//                      variants (they have no submit).
//   chunked:C:N        N items of x + 1 at chunksize C (options.chunksize; Pool.map's chunksize)
//   affine:0:N         x * 3 + 1 over N ints: a loop the compiler vectorises (tiny, small)
//   ramp:NS:N          irregular: N items of NS/1000 .. NS ns, item i costing
//                      NS/1000 * (1 + 999 (i/(N-1))^3): the last eighth carries ~40% of the work
//   nested:INNER:N     a map in a map: N outer items, each a map over INNER items of ~1 us whose
//                      results it sums (threads and oneTBB nest; OpenMP, std::execution::par and
//                      the processes run the outer loop in parallel only)
//   fib:K:1            fib(K) by naive recursion with no cutoff, every call of K >= 2 a task:
//                      threads submits fib(K-1) to a parallel::thread_pool and waits for it
//                      inside the pool, join uses parallel::join, tbb a tbb::task_group
//   tasks:0:N          N tasks of x + 1 submitted from outside the pool, every future kept, then
//                      all waited for (Python's apply_async then get); oneTBB: task_group
//   progress:NS:N      spin:NS:N, for threads_callback and threads_bar
//   paired:NS:N        spin:NS:N, paired (below)
//   idle:MS:N          one map of N items of ~10 us, then MS ms of sleep in the calling thread;
//                      the counter cpu_s is the CPU time every other thread of the process took
//                      meanwhile (a pool that spins or polls shows; one that blocks is ~0). The
//                      time reported is the idle period itself. Variants: threads (the shared
//                      pool), thread_pool, omp, tbb
//
// "paired" in a cell's list (KIND:PARAM:N/sequential,threads,paired; kind paired always is):
// every variant but the loop runs in batches of ~5 ms of calls, each followed by as many calls of
// the loop (timed_paired); its time is its own batches (per call), the counter loop_s the loop's
// batches, calls a batch's length. The opt-in variant sequential_again is the loop itself run as
// a variant: paired, its ratio to the loop shows what the pairing adds (it should read 1.00x).
// "limit" in a paired cell's list (map and imap kinds): after each batch of the loop, as many
// calls of run_limit, the machine's limit at that moment (below); the counter limit_s is their
// time.
//
// Results go to the Google Benchmark JSON file named by --benchmark_out; on stderr, the
// library's own parallel::progress_bar advances with each repetition of each benchmark.
// `compare --relay=TEXT` draws the same bar for another program: it reads "done total" lines on
// stdin (compare.py feeds it the Python peers' progress).
//
// The sequential loop and the peers allocate their results as the library does
// (parallel_bench::fresh_results) and write them by index, as the map does, so a ratio compares
// the same work. Every parallel variant's result is checked against the sequential one after
// timing. Before its timed loop each run makes one untimed call on a prefix of the items (a
// tenth, at least one per worker): runtimes awake, pages and code touched, the forkserver's
// server started.
// POSIX only (start::fork); main() starts with parallel::spawn_main (and, in bench_compare_mpi,
// parallel::mpi_main: ranks other than 0 serve the mpi variant's tasks there).
#include <dirent.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <parallel/parallel.hpp>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if PARALLEL_BENCH_HAVE_TBB
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <execution>
#endif

#if PARALLEL_BENCH_MPI
#include <parallel/mpi.hpp>
#endif

namespace {

using parallel::start::fork;
using parallel::start::forkserver;
using parallel::start::spawn;

// --- the items --------------------------------------------------------------------------------

/// Each item function is written once, so the sequential loop and every backend run the very
/// same code; they capture only numbers, so they cross to worker processes as bytes.
auto spin_item(std::uint64_t ns) {
  // The nearest number of rounds: a 1 ns item is one round (0.74), not none.
  const auto rounds = static_cast<std::uint32_t>((ns * parallel_bench::rounds_per_us + 500) / 1000);
  return [rounds](std::uint64_t x) { return parallel_bench::spin(x, rounds); };
}
auto bytes_item(std::size_t size) {
  return [size](int x) { return std::vector<char>(size, static_cast<char>(x)); };
}
/// Python's `def square(x): return x**2`.
constexpr auto square = [](int x) { return x * x; };
/// Python's `def slow_pow(x, y): time.sleep(1); return pow(x, y)`, with the sleep scaled.
auto slow_pow(int ms) {
  return [ms](int x, int y) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    int r = 1;
    for (int i = 0; i < y; ++i) r *= x;
    return r;
  };
}
/// Python's function_to_parallelize(params) -> {'sum': param1 + param2}.
using dict = std::map<std::string, int>;
constexpr auto function_to_parallelize = [](const dict& params) {
  return dict{{"sum", params.at("param1") + params.at("param2")}};
};
/// tiny and small: a loop the compiler vectorises; an item costs less than a cache miss.
constexpr auto affine = [](int x) { return x * 3 + 1; };

/// irregular: an item is its own cost in spin rounds, so the item function needs nothing else.
constexpr auto spin_rounds = [](std::uint32_t rounds) {
  return parallel_bench::spin(rounds, rounds);
};
std::vector<std::uint32_t> ramp_items(std::uint64_t max_ns, std::size_t n) {
  std::vector<std::uint32_t> items(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double x = n > 1 ? static_cast<double>(i) / static_cast<double>(n - 1) : 1.0;
    const double ns = static_cast<double>(max_ns) / 1000 * (1.0 + 999.0 * x * x * x);
    items[i] = static_cast<std::uint32_t>(ns * parallel_bench::rounds_per_us / 1000);
  }
  return items;
}

/// nested: one outer item is a map over `inner` items of ~1 us, summed. Called as a function it
/// runs its inner map as a loop (what OpenMP, std::execution::par and the processes do per outer
/// item); the threads and oneTBB variants call its inner_item from their own nested map.
struct nested_item {
  std::uint64_t inner = 0;

  std::uint64_t inner_item(std::uint64_t outer, std::uint64_t i) const {
    return parallel_bench::spin(outer * inner + i, parallel_bench::rounds_per_us);
  }
  std::uint64_t operator()(std::uint64_t outer) const {
    auto results = parallel_bench::fresh_results<std::uint64_t>(inner);
    for (std::uint64_t i = 0; i < inner; ++i) results[i] = inner_item(outer, i);
    return std::accumulate(results.begin(), results.end(), std::uint64_t{0});
  }
};

/// fib: the naive recursion, as a function and as tasks.
[[gnu::noinline]] std::uint64_t fib_recursive(std::uint64_t n) {
  return n < 2 ? n : fib_recursive(n - 1) + fib_recursive(n - 2);
}
constexpr auto fib = [](std::uint64_t n) { return fib_recursive(n); };

std::uint64_t fib_via_submit(parallel::thread_pool& pool, std::uint64_t n) {
  if (n < 2) return n;
  auto left = pool.submit([&pool, n] { return fib_via_submit(pool, n - 1); });
  const std::uint64_t right = fib_via_submit(pool, n - 2);
  return left.get() + right;
}

std::uint64_t fib_via_join(std::uint64_t n) {
  if (n < 2) return n;
  const auto [left, right] =
      parallel::join([n] { return fib_via_join(n - 1); }, [n] { return fib_via_join(n - 2); });
  return left + right;
}

#if PARALLEL_BENCH_HAVE_TBB
std::uint64_t fib_via_task_group(std::uint64_t n) {
  if (n < 2) return n;
  std::uint64_t left = 0;
  tbb::task_group group;
  group.run([&left, n] { left = fib_via_task_group(n - 1); });
  const std::uint64_t right = fib_via_task_group(n - 2);
  group.wait();
  return left + right;
}
#endif

// --- one workload -----------------------------------------------------------------------------

/// Which verb a workload goes through: the one its Python version calls. submit: one call at a
/// time; tasks: every task submitted, then every future waited for; nested and fib: the shapes of
/// their kinds (a map of maps, a recursion of tasks).
enum class verb { map, starmap, imap, submit, tasks, nested, fib };

template <verb V, class F, class In>
auto call(const F& f, const In& x) {
  if constexpr (V == verb::starmap) {
    return std::apply(f, x);
  } else {
    return f(x);
  }
}

template <verb V, class F, class In>
struct work {
  using input = In;
  using result = decltype(call<V>(std::declval<const F&>(), std::declval<const In&>()));
  static constexpr verb how = V;

  F f;
  std::vector<In> items;
  int workers;           // 0: all cores
  std::vector<In> warm;  // the warm-up prefix
  std::size_t chunksize = 0;

  work(F fn, std::vector<In> in, int w, std::size_t chunk = 0)
      : f(fn), items(std::move(in)), workers(w), chunksize(chunk) {
    const auto prefix = std::max(threads(), items.size() / 10);
    warm.assign(items.begin(),
                items.begin() + static_cast<std::ptrdiff_t>(std::min(prefix, items.size())));
  }

  /// How many threads a call runs on: `workers`, or one per core.
  std::size_t threads() const {
    return workers > 0 ? static_cast<std::size_t>(workers)
                       : std::max(1u, std::thread::hardware_concurrency());
  }

  /// The first, middle and last results against the sequential loop's.
  bool same_as_sequential(const std::vector<result>& out) const {
    if (out.size() != items.size()) return false;
    if (out.empty()) return true;
    for (std::size_t i : {std::size_t{0}, out.size() / 2, out.size() - 1}) {
      if (!(out[i] == call<V>(f, items[i]))) return false;
    }
    return true;
  }
};

/// roundtrip: x + 1, one call at a time.
constexpr auto increment = [](std::uint64_t x) { return x + 1; };

template <verb V, class F, class In>
auto make_work(F f, std::vector<In> items, int workers, std::size_t chunksize = 0) {
  return std::make_shared<const work<V, F, In>>(f, std::move(items), workers, chunksize);
}

/// The inputs of one cell at a time: a run builds its cell's items (outside the timing) unless
/// the previous run had the same cell. Holding every cell's inputs at once would make the
/// parent larger than a program doing one of them, and fork slower in proportion.
template <class W>
std::shared_ptr<const W> current_work(const std::string& cell,
                                      const std::function<std::shared_ptr<const W>()>& build) {
  static std::string current_cell;
  static std::shared_ptr<const void> current;
  if (current_cell != cell) {
    current.reset();
    current = build();
    current_cell = cell;
  }
  return std::static_pointer_cast<const W>(current);
}

/// 0, 1, .., n - 1.
template <class T = int>
std::vector<T> iota_vector(std::size_t n) {
  std::vector<T> v(n);
  std::iota(v.begin(), v.end(), T{0});
  return v;
}

// --- the variants -----------------------------------------------------------------------------

/// An imap's results into a vector made as the sequential loop makes its own (fresh_results,
/// room for all `n`), so that neither pays for growing it and the ratio compares the same work.
template <class Range>
auto collect(Range&& range, std::size_t n) {
  auto out = parallel_bench::fresh_results<std::ranges::range_value_t<Range>>(n, false);
  for (auto&& r : range) out.push_back(std::move(r));
  return out;
}

/// The floor of a round trip between two processes here: one socketpair, a forked process that
/// reads 8 bytes, computes x + 1 and writes 8 bytes back, both sides blocking in read().
class socketpair_echo {
 public:
  socketpair_echo() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(fds[0]);
      std::uint64_t x = 0;
      while (::read(fds[1], &x, sizeof x) == static_cast<ssize_t>(sizeof x)) {
        x = increment(x);
        if (::write(fds[1], &x, sizeof x) != static_cast<ssize_t>(sizeof x)) break;
      }
      ::_exit(0);
    }
    ::close(fds[1]);
    fd_ = fds[0];
  }
  socketpair_echo(const socketpair_echo&) = delete;
  socketpair_echo& operator=(const socketpair_echo&) = delete;
  ~socketpair_echo() {
    ::close(fd_);
    ::waitpid(pid_, nullptr, 0);
  }
  std::uint64_t call(std::uint64_t x) {
    if (::write(fd_, &x, sizeof x) != static_cast<ssize_t>(sizeof x) ||
        ::read(fd_, &x, sizeof x) != static_cast<ssize_t>(sizeof x))
      std::abort();
    return x;
  }

 private:
  int fd_ = -1;
  pid_t pid_ = -1;
};

/// Made before any pool exists (register_spec): the forked process must hold none of the
/// pools' descriptors, or their workers would not see their channel close.
socketpair_echo& echo() {
  static socketpair_echo e;
  return e;
}

template <class W>
auto run_socketpair(const W&, const std::vector<typename W::input>& items) {
  std::vector<typename W::result> out;
  out.reserve(items.size());
  for (const auto& x : items) out.push_back(echo().call(x));
  return out;
}

/// The baseline. Out of line, as GCC leaves run_verb (the library's calls) in this large unit:
/// every variant's call is then one call from the timed loop. (Measured alone, inlining it or
/// not moved the cell of one ~1 ns item by less than its spread from run to run.) It writes its
/// results as the map and every peer do, into value-initialised slots by index: the push_back of
/// a loop that only reserved does not vectorise, and on one core (taskset -c 0, paired) the map
/// and oneTBB ran x*3+1 over 1e7 ints 1.39x and 1.38x faster than that loop, zero-fill included.
template <class W>
[[gnu::noinline]] auto run_sequential(const W& w, const std::vector<typename W::input>& items) {
  auto out = parallel_bench::fresh_results<typename W::result>(items.size());
  const auto* src = items.data();
  auto* dst = out.data();
  for (std::size_t i = 0; i < items.size(); ++i) dst[i] = call<W::how>(w.f, src[i]);
  return out;
}

/// submit(f, x).get() for each item, one at a time.
template <class Pool, class W>
auto submit_each(Pool& pool, const W& w, const std::vector<typename W::input>& items) {
  std::vector<typename W::result> out;
  out.reserve(items.size());
  for (const auto& x : items) out.push_back(pool.submit(w.f, x).get());
  return out;
}

/// submit(f, x) for every item, keeping the futures, then get() on each.
template <class Pool, class W>
auto submit_all(Pool& pool, const W& w, const std::vector<typename W::input>& items) {
  std::vector<decltype(pool.submit(w.f, items.front()))> futures;
  futures.reserve(items.size());
  for (const auto& x : items) futures.push_back(pool.submit(w.f, x));
  auto out = parallel_bench::fresh_results<typename W::result>(items.size(), false);
  for (auto& future : futures) out.push_back(future.get());
  return out;
}

/// One T made from `key` (T{key}) at its first use for that key, and kept for the run.
template <class T, class Key>
T& kept_for_the_run(Key key) {
  static std::map<Key, std::unique_ptr<T>> made;
  auto& one = made[key];
  if (!one) one = std::make_unique<T>(key);
  return *one;
}

/// The thread_pool of the submit and fib cells: one per number of workers, kept for the run.
parallel::thread_pool& shared_thread_pool(int workers) {
  return kept_for_the_run<parallel::thread_pool>(workers);
}

/// A verb's call on a pool object (process_pool, mpi_pool) or, with a policy, on the free
/// functions; with the cell's chunksize unless given other options.
template <class W, class Target>
auto run_verb(const W& w, const std::vector<typename W::input>& items, Target& target,
              const parallel::options& opts) {
  constexpr bool is_policy = parallel::detail::is_policy<std::remove_cv_t<Target>>::value;
  if constexpr (W::how == verb::starmap) {
    if constexpr (is_policy) {
      return parallel::starmap(target, w.f, items, opts);
    } else {
      return target.starmap(w.f, items, opts);
    }
  } else if constexpr (W::how == verb::imap) {
    if constexpr (is_policy) {
      return collect(parallel::imap(target, w.f, items, opts), items.size());
    } else {
      return collect(target.imap(w.f, items, opts), items.size());
    }
  } else {  // map, and the kinds that have no verb of their own on this target
    if constexpr (is_policy) {
      return parallel::map(target, w.f, items, opts);
    } else {
      return target.map(w.f, items, opts);
    }
  }
}

template <class W, class Target>
auto run_verb(const W& w, const std::vector<typename W::input>& items, Target& target) {
  return run_verb(w, items, target, parallel::options{.chunksize = w.chunksize});
}

/// parallel::map / starmap / imap with the threads policy, and the thread-only shapes: submit on
/// a thread_pool, nested maps, fib as tasks.
template <class W>
auto run_threads(const W& w, const std::vector<typename W::input>& items) {
  const parallel::threads policy{.workers = w.workers};
  if constexpr (W::how == verb::submit) {
    return submit_each(shared_thread_pool(w.workers), w, items);
  } else if constexpr (W::how == verb::tasks) {
    return submit_all(shared_thread_pool(w.workers), w, items);
  } else if constexpr (W::how == verb::fib) {
    auto& pool = shared_thread_pool(w.workers);
    std::vector<typename W::result> out;
    // The root runs in the pool too, so the calling thread only waits, as it does for a map.
    for (const auto n : items)
      out.push_back(pool.submit([&pool, n] { return fib_via_submit(pool, n); }).get());
    return out;
  } else if constexpr (W::how == verb::nested) {
    const auto inner = std::views::iota(std::uint64_t{0}, w.f.inner);
    return parallel::map(
        policy,
        [f = w.f, policy, inner](std::uint64_t outer) {
          auto results = parallel::map(
              policy, [&f, outer](std::uint64_t i) { return f.inner_item(outer, i); }, inner);
          return std::accumulate(results.begin(), results.end(), std::uint64_t{0});
        },
        items);
  } else {
    return run_verb(w, items, policy);
  }
}

/// fib through parallel::join (the join variant; other kinds run their map on threads).
template <class W>
auto run_join(const W& w, const std::vector<typename W::input>& items) {
  if constexpr (W::how == verb::fib) {
    std::vector<typename W::result> out;
    for (const auto n : items) out.push_back(fib_via_join(n));
    return out;
  } else {
    return run_threads(w, items);
  }
}

/// threads with options.progress: `bar` false, a (done, total) callable; true, progress_bar.
/// (The kinds with no map of their own run as the threads variant.)
template <class W>
auto run_threads_progress(const W& w, const std::vector<typename W::input>& items, bool bar) {
  constexpr bool has_map = W::how == verb::map || W::how == verb::starmap || W::how == verb::imap;
  if constexpr (has_map) {
    std::atomic<std::size_t> last{0};
    parallel::options opts{.chunksize = w.chunksize};
    if (bar) {
      opts.progress = parallel::progress_bar("progress cell");
    } else {
      opts.progress = [&last](std::size_t done, std::size_t) {
        last.store(done, std::memory_order_relaxed);
      };
    }
    const parallel::threads policy{.workers = w.workers};
    return run_verb(w, items, policy, opts);
  } else {
    return run_threads(w, items);
  }
}

/// parallel::map / starmap / imap with a processes<S> policy, workers started at each call.
template <class S, class W>
auto run_per_call(const W& w, const std::vector<typename W::input>& items) {
  const parallel::processes<S> policy{.workers = w.workers};
  return run_verb(w, items, policy);
}

/// A process_pool<S> of `workers`, started at its first use and kept for the whole run.
std::vector<std::function<void()>> pool_closers;

template <class S>
parallel::process_pool<S>& shared_pool(int workers) {
  static std::map<int, std::unique_ptr<parallel::process_pool<S>>> pools;
  auto& pool = pools[workers];
  if (!pool) {
    pool = std::make_unique<parallel::process_pool<S>>(parallel::pool_options{.workers = workers});
    pool_closers.emplace_back([] { pools.clear(); });
  }
  return *pool;
}

template <class S, class W>
auto run_pool(const W& w, const std::vector<typename W::input>& items) {
  auto& pool = shared_pool<S>(w.workers);
  if constexpr (W::how == verb::submit) {
    return submit_each(pool, w, items);
  } else if constexpr (W::how == verb::tasks) {
    return submit_all(pool, w, items);
  } else {
    return run_verb(w, items, pool);
  }
}

#if PARALLEL_BENCH_MPI
/// parallel::mpi{} across the ranks of the job; submit and tasks on one parallel::mpi_pool.
template <class W>
auto run_mpi(const W& w, const std::vector<typename W::input>& items) {
  if constexpr (W::how == verb::submit || W::how == verb::tasks) {
    static parallel::mpi_pool pool;
    if constexpr (W::how == verb::submit) {
      return submit_each(pool, w, items);
    } else {
      return submit_all(pool, w, items);
    }
  } else {
    const parallel::mpi policy{.workers = w.workers};
    return run_verb(w, items, policy);
  }
}
#endif

// The peers have no starmap or imap: they run the same function on each item into a vector.
#if PARALLEL_BENCH_HAVE_OPENMP
/// OpenMP over the items: schedule(static), or with `dynamic` schedule(dynamic, 1). Nested
/// OpenMP regions are off by default, so a nested cell runs its outer loop in parallel only.
template <class W>
auto run_omp(const W& w, const std::vector<typename W::input>& items, bool dynamic = false) {
  auto out = parallel_bench::fresh_results<typename W::result>(items.size());
  const auto n = static_cast<std::ptrdiff_t>(items.size());
  const int threads = w.workers > 0 ? w.workers : omp_get_num_procs();
  const auto* src = items.data();
  auto* dst = out.data();
  if (dynamic) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (std::ptrdiff_t i = 0; i < n; ++i) dst[i] = call<W::how>(w.f, src[i]);
  } else {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::ptrdiff_t i = 0; i < n; ++i) dst[i] = call<W::how>(w.f, src[i]);
  }
  return out;
}
#endif

#if PARALLEL_BENCH_HAVE_TBB
/// One item on oneTBB: a nested cell's inner map is a parallel_for too, a fib cell's recursion a
/// task_group.
template <class W>
typename W::result tbb_item(const W& w, const typename W::input& x) {
  if constexpr (W::how == verb::nested) {
    auto results = parallel_bench::fresh_results<std::uint64_t>(w.f.inner);
    auto* dst = results.data();
    tbb::parallel_for(tbb::blocked_range<std::uint64_t>(0, w.f.inner),
                      [&w, x, dst](const tbb::blocked_range<std::uint64_t>& r) {
                        for (auto i = r.begin(); i != r.end(); ++i) dst[i] = w.f.inner_item(x, i);
                      });
    return std::accumulate(results.begin(), results.end(), std::uint64_t{0});
  } else if constexpr (W::how == verb::fib) {
    return fib_via_task_group(x);
  } else {
    return call<W::how>(w.f, x);
  }
}

template <class W>
auto run_tbb(const W& w, const std::vector<typename W::input>& items) {
  auto out = parallel_bench::fresh_results<typename W::result>(items.size());
  const auto* src = items.data();
  auto* dst = out.data();
  auto body = [&] {
    if constexpr (W::how == verb::tasks) {
      // Python's apply_async for each item, then get(): a task_group's run() of each, wait().
      tbb::task_group group;
      for (std::size_t i = 0; i < items.size(); ++i) {
        group.run([&w, src, dst, i] { dst[i] = call<W::how>(w.f, src[i]); });
      }
      group.wait();
    } else if constexpr (W::how == verb::fib) {
      for (std::size_t i = 0; i < items.size(); ++i) dst[i] = tbb_item(w, src[i]);
    } else {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, items.size()),
                        [=, &w](const tbb::blocked_range<std::size_t>& r) {
                          for (std::size_t i = r.begin(); i != r.end(); ++i) {
                            dst[i] = tbb_item(w, src[i]);
                          }
                        });
    }
  };
  if (w.workers > 0) {
    // oneTBB caps its workers at the core count unless told otherwise, and says so on stderr.
    tbb::global_control allow(tbb::global_control::max_allowed_parallelism,
                              static_cast<std::size_t>(w.workers));
    tbb::task_arena(w.workers).execute(body);
  } else {
    body();
  }
  return out;
}

/// std::execution::par has no way to ask for a number of threads: it runs on oneTBB's default.
template <class W>
auto run_std_par(const W& w, const std::vector<typename W::input>& items) {
  auto out = parallel_bench::fresh_results<typename W::result>(items.size());
  std::transform(std::execution::par, items.begin(), items.end(), out.begin(),
                 [&f = w.f](const typename W::input& x) { return call<W::how>(f, x); });
  return out;
}
#endif

// --- the machine's limit ----------------------------------------------------------------------

/// Seconds of the calls of run_limit that are not its time (below): timed_paired takes what a
/// batch's calls added here off that batch's time.
double limit_untimed_s = 0;

/// The threads of run_limit beside the caller: started once, as every pool and peer keeps its own
/// (threads made for each call read low: run_limit's figures), and asleep between calls
/// (std::atomic::wait, a futex), taking no core from the other variants.
class limit_team {
 public:
  explicit limit_team(std::size_t others) {
    threads_.reserve(others);
    for (std::size_t t = 1; t <= others; ++t) threads_.emplace_back([this, t] { serve(t); });
  }
  limit_team(const limit_team&) = delete;
  limit_team& operator=(const limit_team&) = delete;
  ~limit_team() {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
  }  // then threads_ joins them

  /// job(t) on each thread t = 1 .. others and job(0) in the caller; returns when all ended.
  void run(const std::function<void(std::size_t)>& job) {
    job_ = &job;
    pending_.store(threads_.size(), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    job(0);
    while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }

 private:
  void serve(std::size_t t) {
    std::uint64_t seen = 0;
    for (;;) {
      generation_.wait(seen, std::memory_order_acquire);
      seen = generation_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_relaxed)) return;
      (*job_)(t);
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::size_t> pending_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(std::size_t)>* job_ = nullptr;
  std::vector<std::jthread> threads_;  // last: joined before the rest goes
};

/// The machine's limit on a cell of items of equal cost ("limit" in its list): the caller and N - 1
/// threads of a limit_team run their own slices of the items (a contiguous n/N each, as OpenMP's
/// static schedule; nothing is shared, nothing is balanced), from a common start, counting what
/// they did every ~1/256 of a slice. When the first thread ends its slice, the items every
/// thread had done by then are what the cores gave in that window, all of them busy; the call's
/// time is the results' allocation (made in the caller, as every variant's) plus n items at that
/// rate. The threads' wake-up and end and the others' tail are not its time. So it reads what
/// the cores give N threads in the same seconds as the other variants' calls: on this VM two
/// threads of spin, started together, ran 0.8-1.7x as fast as one (most runs 0.9-1.1x) for ten
/// minutes (bench/README.md), and a variant's repetitions seconds apart from the limit's measured
/// those phases; timed_paired runs its calls right after each batch of the loop's, so every
/// variant's repetitions have it beside them. It is a bound within a few % (the noise of its
/// window); a variant under it lost the rest to its own costs. Its first forms read low on tiny, a
/// memory-bound cell: with threads made for each call and the slices' blocks dealt in turn, the
/// variants read 104-138% of it in a full run; with the team, 103-107% dealt in turn and 94-98%
/// contiguous (this form), run alone; on balanced, CPU-bound, 0.88-1.02 dealt in turn (with 1e7 x
/// 10 ns) and 0.90-1.01 contiguous.
template <class W>
auto run_limit(const W& w, const std::vector<typename W::input>& items) {
  using clock = std::chrono::steady_clock;
  const auto entered = clock::now();
  const std::size_t n = items.size();
  auto out = parallel_bench::fresh_results<typename W::result>(n);
  const auto allocated = clock::now();
  const std::size_t threads = std::min(std::max<std::size_t>(1, n), w.threads());
  const std::size_t block = std::max<std::size_t>(1, n / (threads * 256));
  const std::size_t blocks = (n + block - 1) / block;
  struct alignas(64) lane {
    std::atomic<std::size_t> done{0};
  };
  std::vector<lane> lanes(threads);
  std::atomic<std::size_t> arrived{0};
  std::atomic<bool> go{false};
  std::atomic<bool> one_ended{false};
  clock::time_point start{};
  clock::time_point first_end{};
  std::size_t done_by_then = 0;
  const auto* src = items.data();
  auto* dst = out.data();
  const std::function<void(std::size_t)> body = [&](std::size_t t) {
    if (arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == threads) {
      start = clock::now();
      go.store(true, std::memory_order_release);
    } else {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    }
    std::size_t mine = 0;
    const std::size_t first_block = blocks * t / threads;
    const std::size_t end_block = blocks * (t + 1) / threads;
    for (std::size_t b = first_block; b < end_block; ++b) {
      const std::size_t lo = b * block;
      const std::size_t hi = std::min(n, lo + block);
      for (std::size_t i = lo; i < hi; ++i) dst[i] = call<W::how>(w.f, src[i]);
      mine += hi - lo;
      lanes[t].done.store(mine, std::memory_order_relaxed);
    }
    if (!one_ended.exchange(true, std::memory_order_acq_rel)) {
      first_end = clock::now();
      for (const auto& l : lanes) done_by_then += l.done.load(std::memory_order_relaxed);
    }
  };
  kept_for_the_run<limit_team>(threads - 1).run(body);
  const std::chrono::duration<double> window = first_end - start;
  const std::chrono::duration<double> allocation = allocated - entered;
  const double own =
      allocation.count() + window.count() * static_cast<double>(n) /
                               static_cast<double>(std::max<std::size_t>(1, done_by_then));
  limit_untimed_s += std::chrono::duration<double>(clock::now() - entered).count() - own;
  return out;
}

// --- registration -----------------------------------------------------------------------------

struct settings {
  int repetitions = 3;
  double min_time = 0.1;
  bool paired = false;  // the cell's variants run paired with the loop (timed_paired)
  bool limit = false;   // and the machine's limit after each batch of the loop (run_limit)
};

/// Every variant's name, for reading a cell's list of variants.
constexpr std::array<std::string_view, 19> variant_names = {"sequential",
                                                            "sequential_again",
                                                            "threads",
                                                            "pool_fork",
                                                            "pool_spawn",
                                                            "pool_forkserver",
                                                            "per_call_fork",
                                                            "per_call_spawn",
                                                            "per_call_forkserver",
                                                            "omp",
                                                            "tbb",
                                                            "std_par",
                                                            "socketpair",
                                                            "omp_dynamic",
                                                            "join",
                                                            "thread_pool",
                                                            "threads_callback",
                                                            "threads_bar",
                                                            "mpi"};

/// The progress bar of the whole run: one step per repetition of a benchmark. Google Benchmark
/// reports a benchmark only once all its repetitions are done, and with random interleaving
/// that is in the last round, so the bar is driven from here: a call of the benchmark whose
/// timed loop lasted min_time is the one Google Benchmark keeps for a repetition (shorter ones
/// only size the iteration count).
struct run_progress {
  parallel::progress bar;
  std::size_t total = 0;
  std::size_t done = 0;
  double min_time = 0;

  void ran(double seconds, bool failed) {
    if (seconds < min_time && !failed) return;
    done = std::min(done + 1, total);
    bar(done, total);
  }
};
run_progress progress_of_runs;

/// Gives the memory the previous runs freed back to the system. glibc keeps freed memory in its
/// arenas (one per thread that allocated: the 1 MiB results of a threads run leave hundreds of
/// MiB there), and fork copies the page tables of all of it: a per-call fork that takes 2.5 ms
/// in a fresh process took 18 ms after a threads run of the 1 MiB cell, and ~100 ms in the full
/// grid. Each run starts from what its own cell needs, as a program doing only that would.
void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

/// Before a run's timed loop: the memory earlier runs freed given back, and an untimed call on
/// the warm-up prefix.
template <class W, class Run>
void warm_up(const W& w, Run& run) {
  release_free_memory();
  auto warm = run(w, w.warm);
  parallel_bench::keep(warm);
}

/// One timed run: warm_up, then the timed loop, then the check.
template <class W, class Run>
void timed(benchmark::State& state, const W& w, Run run) {
  warm_up(w, run);
  std::vector<typename W::result> out;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    out = run(w, w.items);
    parallel_bench::keep(out);
  }
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  const bool wrong = !w.same_as_sequential(out);
  if (wrong) state.SkipWithError("wrong results");
  progress_of_runs.ran(seconds.count(), wrong);
}

/// The CPU time (ns) each thread of this process but the calling one has taken so far, by
/// thread id, read from each thread's own CPU clock. Not from CLOCK_PROCESS_CPUTIME_ID: Linux
/// sums the process clock from each thread's accounted run time, which for a thread running on
/// another core lags by up to a scheduler tick (4 ms at HZ=250); a pool's worker still running at
/// the start of the period then had its last ms of the map counted as idle CPU (measured here:
/// the process clock gave 0.07-3.8 ms for periods in which the workers' own clocks took 30-52
/// us). A thread's own clock (clock id ((~tid) << 3) | 6: per-thread, scheduler time, the
/// kernel's encoding that pthread_getcpuclockid also makes) includes the time since its last
/// tick.
std::map<long, long long> other_threads_cpu_ns() {
  std::map<long, long long> out;
  const long self = static_cast<long>(gettid());
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) throw std::runtime_error("idle cell: cannot list /proc/self/task");
  while (const dirent* entry = readdir(dir)) {
    const long tid = std::strtol(entry->d_name, nullptr, 10);
    if (tid <= 0 || tid == self) continue;
    const auto clock = static_cast<clockid_t>((~static_cast<unsigned long>(tid) << 3) | 6UL);
    timespec ts{};
    if (clock_gettime(clock, &ts) != 0) continue;  // the thread has ended since the listing
    out[tid] = static_cast<long long>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
  }
  closedir(dir);
  return out;
}

/// The CPU time (ns) the threads of `now` took since `before` (other_threads_cpu_ns readings); a
/// thread started in between counts from zero, one that ended in between is not counted.
long long cpu_ns_between(const std::map<long, long long>& before,
                         const std::map<long, long long>& now) {
  long long took = 0;
  for (const auto& [tid, ns] : now) {
    const auto start = before.find(tid);
    took += ns - (start == before.end() ? 0 : start->second);
  }
  return took;
}

/// Waits (1 ms at a time, 50 ms at most) until the process's other threads took under 0.1 ms of
/// CPU in the last ms: the workers of OpenMP and oneTBB spin for a while after a call, and a loop
/// timed meanwhile shares the cores with them (a paired oneTBB read 2.49x the loop on 2 cores).
/// Returns the last reading of their CPU clocks (other_threads_cpu_ns).
std::map<long, long long> settle_other_threads() {
  auto before = other_threads_cpu_ns();
  for (int ms = 0; ms < 50; ++ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto now = other_threads_cpu_ns();
    if (cpu_ns_between(before, now) < 100'000) return now;
    before = std::move(now);
  }
  return before;
}

/// How long one batch of a paired run lasts, at least (timed_paired).
constexpr std::chrono::milliseconds pair_batch{5};

/// A paired run (a cell of kind paired, or with "paired" in its list): batches of calls of the
/// variant, each followed by as many calls of the sequential loop, in the same repetition. The time
/// of a repetition is its batches of the variant (a batch per iteration); the counter loop_s the
/// loop's batches after them, and calls the batch's length. A ratio of the two compares calls made
/// next to each other (batches of ~5 ms, or of one call when a call takes longer): on this shared
/// VM the speed of the whole process changes by up to 1.8x for seconds at a time (the same loop, 24
/// or 42 ns a call from one run to the next), and two variants' repetitions, seconds apart,
/// measured those phases (10 items of 1 ns: 0.64-1.17x between runs of the same build).
template <class W, class Run>
void timed_paired(benchmark::State& state, const W& w, Run run, bool with_limit) {
  using clock = std::chrono::steady_clock;
  warm_up(w, run);
  {
    auto loop = run_sequential(w, w.items);  // untimed: warm
    parallel_bench::keep(loop);
  }
  // Untimed calls of the variant on the whole input for ~1 ms: warm, and the batches' length
  // (a peer 100x slower than the loop on a cell, as oneTBB on one item, keeps its batches of ~5
  // ms).
  std::size_t probed = 0;
  const auto probe = clock::now();
  auto probe_took = clock::duration::zero();
  while (probe_took < pair_batch / 5) {
    auto own = run(w, w.items);
    parallel_bench::keep(own);
    ++probed;
    probe_took = clock::now() - probe;
  }
  const auto calls = static_cast<std::size_t>(std::max(
      1.0, static_cast<double>(probed) * std::chrono::duration<double>(pair_batch).count() /
               std::chrono::duration<double>(probe_took).count()));
  // Every call's result is freed before the next call, the variant's as the loop's: each
  // call's results go where the call before freed its own, as in a program that maps in a
  // loop. (The variant's last result used to stay until its next call while the loop ran,
  // whose own were freed at once: 1e7 x 10 ns, 80 MB of results, timed the loop at 40-58 ms a
  // call next to threads' 24 ms, 2.14x on 2 cores, the loop 40 ms alone; with each side
  // keeping its last, both took 35-67 ms.) The variant's results (and the limit's) are checked
  // once, after its first batch, untimed. A batch: `calls` calls of `call` in a row, the last
  // result returned.
  auto batch = [calls](auto call) {
    for (std::size_t k = 1; k < calls; ++k) {
      auto result = call();
      parallel_bench::keep(result);
    }
    auto last = call();
    parallel_bench::keep(last);
    return last;
  };
  bool wrong = false;
  bool limit_wrong = false;
  bool checked = false;
  bool limit_checked = false;
  double loop_seconds = 0;
  double limit_seconds = 0;
  long long others_ns = 0;
  const auto start = clock::now();
  for (auto _ : state) {
    const auto a = clock::now();
    auto own = batch([&] { return run(w, w.items); });
    const auto b = clock::now();
    if (!checked) {
      wrong = !w.same_as_sequential(own);
      checked = true;
    }
    own = std::vector<typename W::result>();  // freed (not only cleared)
    const auto others_before = settle_other_threads();
    const auto c = clock::now();
    auto loop = batch([&] { return run_sequential(w, w.items); });
    const auto d = clock::now();
    others_ns += cpu_ns_between(others_before, other_threads_cpu_ns());
    loop = std::vector<typename W::result>();
    // An imap cell's limit is its items' as a map: what the cores give the items alone (the
    // imap also hands each result to the caller, in order).
    if constexpr (W::how == verb::map || W::how == verb::imap) {
      if (with_limit) {
        const double untimed_before = limit_untimed_s;
        const auto e = clock::now();
        auto limit = batch([&] { return run_limit(w, w.items); });
        const auto f = clock::now();
        limit_seconds +=
            std::chrono::duration<double>(f - e).count() - (limit_untimed_s - untimed_before);
        if (!limit_checked) limit_wrong = !w.same_as_sequential(limit);
        limit_checked = true;
      }
    }
    state.SetIterationTime(std::chrono::duration<double>(b - a).count());
    loop_seconds += std::chrono::duration<double>(d - c).count();
  }
  const std::chrono::duration<double> seconds = clock::now() - start;
  state.counters["loop_s"] = benchmark::Counter(loop_seconds, benchmark::Counter::kAvgIterations);
  // The CPU the variant's threads took while the loop was timed, per second of the loop: on 2
  // cores, a pool still busy then slows the loop and flatters the variant.
  state.counters["others_per_loop_s"] =
      loop_seconds > 0 ? static_cast<double>(others_ns) * 1e-9 / loop_seconds : 0.0;
  state.counters["calls"] = static_cast<double>(calls);
  if (limit_seconds > 0) {
    state.counters["limit_s"] =
        benchmark::Counter(limit_seconds, benchmark::Counter::kAvgIterations);
  }
  if (wrong) state.SkipWithError("wrong results");
  if (limit_wrong) state.SkipWithError("wrong results from the machine limit (run_limit)");
  progress_of_runs.ran(seconds.count(), wrong || limit_wrong);
}

std::size_t registered_benchmarks = 0;

/// Registers "<cell>/<variant>" for every variant this build has and `wanted` names (all of
/// them when `wanted` is empty); `build` makes the cell's work. `Processes` false: the kind has
/// no process or MPI variants (its families never ask for them), and they are not instantiated
/// (this translation unit is large already: see bench/CMakeLists.txt on GCC's inlining budget).
template <bool Processes = true, class Build>
void register_cell(const std::string& cell, Build build, const settings& s,
                   const std::vector<std::string>& wanted) {
  using W = typename std::invoke_result_t<Build>::element_type;
  using items_t = std::vector<typename W::input>;
  const std::function<std::shared_ptr<const W>()> make = build;
  // An opt-in variant runs only where the cell's list names it.
  auto add = [&](const char* variant, auto run, bool opt_in = false) {
    const bool named = std::ranges::find(wanted, variant) != wanted.end();
    if (opt_in ? !named : !wanted.empty() && !named) return;
    // The loop itself runs as it does in any cell: the paired runs of the others refer to it.
    const bool pair = s.paired && std::string_view(variant) != "sequential";
    auto* b = benchmark::RegisterBenchmark(
        (cell + "/" + variant).c_str(),
        [cell, make, run, pair, limit = s.limit](benchmark::State& state) {
          if (pair) {
            timed_paired(state, *current_work(cell, make), run, limit);
          } else {
            timed(state, *current_work(cell, make), run);
          }
        });
    if (pair) {
      b->Setup(parallel_bench::settle)->UseManualTime();  // defaults(), with the pairs' time
    } else {
      b->Apply(parallel_bench::defaults);
    }
    b->Repetitions(s.repetitions)->MinTime(s.min_time)->Unit(benchmark::kMicrosecond);
    ++registered_benchmarks;
  };
  const auto loop = [](const W& w, const items_t& in) { return run_sequential(w, in); };
  add("sequential", loop);
  add("sequential_again", loop, true);  // the same loop as a variant (timed_paired's A/A)
  add("threads", [](const W& w, const items_t& in) { return run_threads(w, in); });
  if constexpr (Processes) {
    add("pool_fork", [](const W& w, const items_t& in) { return run_pool<fork>(w, in); });
    add("pool_spawn", [](const W& w, const items_t& in) { return run_pool<spawn>(w, in); });
    add("pool_forkserver",
        [](const W& w, const items_t& in) { return run_pool<forkserver>(w, in); });
#if PARALLEL_BENCH_MPI
    add(
        "mpi", [](const W& w, const items_t& in) { return run_mpi(w, in); }, true);
#endif
  }
  if constexpr (W::how == verb::submit) {
    add("socketpair", [](const W& w, const items_t& in) { return run_socketpair(w, in); });
    return;
  }
  if constexpr (Processes) {
    add("per_call_fork", [](const W& w, const items_t& in) { return run_per_call<fork>(w, in); });
    add("per_call_spawn", [](const W& w, const items_t& in) { return run_per_call<spawn>(w, in); });
    add("per_call_forkserver",
        [](const W& w, const items_t& in) { return run_per_call<forkserver>(w, in); });
  }
  add(
      "join", [](const W& w, const items_t& in) { return run_join(w, in); }, true);
  add(
      "threads_callback",
      [](const W& w, const items_t& in) { return run_threads_progress(w, in, false); }, true);
  add(
      "threads_bar",
      [](const W& w, const items_t& in) { return run_threads_progress(w, in, true); }, true);
#if PARALLEL_BENCH_HAVE_OPENMP
  add("omp", [](const W& w, const items_t& in) { return run_omp(w, in); });
  add(
      "omp_dynamic", [](const W& w, const items_t& in) { return run_omp(w, in, true); }, true);
#endif
#if PARALLEL_BENCH_HAVE_TBB
  add("tbb", [](const W& w, const items_t& in) { return run_tbb(w, in); });
  add("std_par", [](const W& w, const items_t& in) { return run_std_par(w, in); });
#endif
}

// --- idle -------------------------------------------------------------------------------------

/// One idle run: `work` (a map that wakes every worker), then `ms` of sleep in this thread; the
/// CPU time all the other threads of the process took meanwhile is the counter cpu_s (a thread
/// started during the period counts from zero; one that ended during it is not counted: no
/// variant's pool ends a thread while it lives).
template <class Work>
void idle_run(benchmark::State& state, int ms, const Work& work) {
  for (auto _ : state) {
    auto keep_alive = work();  // a fresh pool stays alive (idle) until the end of the period
    const auto before = other_threads_cpu_ns();
    const auto wall_before = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - wall_before;
    const long long others = cpu_ns_between(before, other_threads_cpu_ns());
    state.SetIterationTime(wall.count());
    state.counters["cpu_s"] = static_cast<double>(others) * 1e-9;
  }
  progress_of_runs.ran(progress_of_runs.min_time, false);
}

/// Longer than the other runs' settle: the process CPU clock also counts OpenMP's and oneTBB's
/// workers, which keep spinning for a while after the run before this one.
void settle_long(const benchmark::State&) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
}

/// Registers the idle cell "idle:MS:N" for the variants `wanted` names (all four by default).
void register_idle(const std::string& cell, int ms, std::size_t n, const settings& s,
                   const std::vector<std::string>& wanted) {
  // The map before the idle period: the same work, and the same runs, as a spin cell's.
  const auto w = make_work<verb::map>(spin_item(10'000), iota_vector<std::uint64_t>(n), 0);
  auto add = [&](const char* variant, auto work) {
    if (!wanted.empty() && std::ranges::find(wanted, variant) == wanted.end()) return;
    benchmark::RegisterBenchmark((cell + "/" + variant).c_str(),
                                 [ms, work](benchmark::State& state) { idle_run(state, ms, work); })
        ->Setup(settle_long)
        ->Iterations(1)
        ->UseManualTime()
        ->Repetitions(s.repetitions)
        ->Unit(benchmark::kMillisecond);
    ++registered_benchmarks;
  };
  // The shared pool behind parallel::threads{}, which outlives the call.
  add("threads", [w] { return run_threads(*w, w->items); });
  // A parallel::thread_pool made for the run, idle while it lives.
  add("thread_pool", [w] {
    auto pool = std::make_shared<parallel::thread_pool>();
    auto out = pool->map(w->f, w->items);
    parallel_bench::keep(out);
    return pool;
  });
#if PARALLEL_BENCH_HAVE_OPENMP
  add("omp", [w] { return run_omp(*w, w->items); });
#endif
#if PARALLEL_BENCH_HAVE_TBB
  add("tbb", [w] { return run_tbb(*w, w->items); });
#endif
}

/// The variants of "VARIANT,VARIANT,..." (and "paired", "limit"); nullopt when one of them has
/// no such name.
std::optional<std::vector<std::string>> read_variants(const std::string& list) {
  std::vector<std::string> names;
  for (std::size_t start = 0; start <= list.size();) {
    const auto comma = std::min(list.find(',', start), list.size());
    names.push_back(list.substr(start, comma - start));
    if (names.back() != "paired" && names.back() != "limit" &&
        std::ranges::find(variant_names, names.back()) == variant_names.end())
      return {};
    start = comma + 1;
  }
  return names;
}

/// Registers the cell "KIND:PARAM:N[/VARIANT,...]"; false when it does not parse. "paired" in
/// the list runs the variants paired with the loop (timed_paired), as kind paired always does;
/// "limit" runs the machine's limit beside the loop in those pairs.
bool register_spec(const std::string& text, const settings& run_settings) {
  const auto slash = text.find('/');
  const std::string spec = text.substr(0, slash);
  std::optional<std::vector<std::string>> wanted = std::vector<std::string>{};
  if (slash != std::string::npos) wanted = read_variants(text.substr(slash + 1));
  if (!wanted) return false;
  char kind[32] = {};
  unsigned long long param = 0, n = 0;
  char end = 0;
  if (std::sscanf(spec.c_str(), "%31[a-z_]:%llu:%llu%c", kind, &param, &n, &end) != 3) return false;
  const std::string k = kind;
  settings s = run_settings;
  const auto paired = std::ranges::find(*wanted, "paired");
  s.paired = k == "paired" || paired != wanted->end();
  if (paired != wanted->end()) wanted->erase(paired);
  const auto limit = std::ranges::find(*wanted, "limit");
  s.limit = limit != wanted->end();
  if (limit != wanted->end()) wanted->erase(limit);
  const auto count = static_cast<std::size_t>(n);
  if (k == "imap") {
    register_cell<false>(
        spec,
        [=] {
          return make_work<verb::imap>(spin_item(param), iota_vector<std::uint64_t>(count), 0);
        },
        s, *wanted);
  } else if (k == "spin" || k == "progress" || k == "paired") {
    // progress: spin items, for the progress variants; paired: spin items, each variant's calls
    // alternating with the loop's (timed_paired)
    register_cell(
        spec,
        [=] {
          return make_work<verb::map>(spin_item(param), iota_vector<std::uint64_t>(count), 0);
        },
        s, *wanted);
  } else if (k == "bytes") {
    register_cell(
        spec, [=] { return make_work<verb::map>(bytes_item(param), iota_vector(count), 0); }, s,
        *wanted);
  } else if (k == "square" || k == "startup") {
    register_cell(
        spec, [=] { return make_work<verb::map>(square, iota_vector(count), 0); }, s, *wanted);
  } else if (k == "slow_pow") {
    register_cell(
        spec,
        [=] {
          std::vector<std::tuple<int, int>> xs;  // zip(xs, [2] * len(xs))
          for (int x : iota_vector(count)) xs.emplace_back(x, 2);
          return make_work<verb::starmap>(slow_pow(static_cast<int>(param)), std::move(xs), 5);
        },
        s, *wanted);
  } else if (k == "roundtrip") {
    if (wanted->empty() || std::ranges::find(*wanted, "socketpair") != wanted->end()) {
      (void)echo();  // before any pool: see echo()
    }
    register_cell(
        spec,
        [=] { return make_work<verb::submit>(increment, iota_vector<std::uint64_t>(count), 0); }, s,
        *wanted);
  } else if (k == "chunked") {
    register_cell(
        spec,
        [=] {
          return make_work<verb::map>(increment, iota_vector<std::uint64_t>(count), 0, param);
        },
        s, *wanted);
  } else if (k == "affine") {
    register_cell<false>(
        spec, [=] { return make_work<verb::map>(affine, iota_vector(count), 0); }, s, *wanted);
  } else if (k == "ramp") {
    register_cell<false>(
        spec, [=] { return make_work<verb::map>(spin_rounds, ramp_items(param, count), 0); }, s,
        *wanted);
  } else if (k == "nested") {
    register_cell<false>(
        spec,
        [=] {
          return make_work<verb::nested>(nested_item{param}, iota_vector<std::uint64_t>(count), 0);
        },
        s, *wanted);
  } else if (k == "fib") {
    register_cell<false>(
        spec,
        [=] { return make_work<verb::fib>(fib, std::vector<std::uint64_t>(count, param), 0); }, s,
        *wanted);
  } else if (k == "tasks") {
    register_cell<false>(
        spec,
        [=] { return make_work<verb::tasks>(increment, iota_vector<std::uint64_t>(count), 0); }, s,
        *wanted);
  } else if (k == "idle") {
    register_idle(spec, static_cast<int>(param), count, s, *wanted);
  } else if (k == "params") {
    register_cell(
        spec,
        [=] {
          std::vector<dict> params;  // {'param1': x, 'param2': 15}
          for (int x : iota_vector(count)) params.push_back(dict{{"param1", x}, {"param2", 15}});
          return make_work<verb::imap>(function_to_parallelize, std::move(params), 0);
        },
        s, *wanted);
  } else {
    return false;
  }
  return true;
}

// --- progress ---------------------------------------------------------------------------------

/// Google Benchmark's display reporter: prints nothing while the bar runs (the JSON file has
/// the results), closes the bar and names the runs that failed.
class quiet_reporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override {
    progress_of_runs.bar(0, progress_of_runs.total);
    return true;
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type == Run::RT_Iteration && run.error_occurred) {
        failures_.push_back(run.benchmark_name() + ": " + run.error_message);
      }
    }
  }

  void Finalize() override {
    auto& p = progress_of_runs;
    if (p.done < p.total) p.bar(p.total, p.total);  // the last call says done == total
    for (const auto& failure : failures_) std::fprintf(stderr, "FAILED: %s\n", failure.c_str());
  }

  bool failed() const { return !failures_.empty(); }

 private:
  std::vector<std::string> failures_;
};

/// --relay=TEXT: the bar for another program's runs, from "done total" lines on stdin.
int relay(const std::string& description) {
  auto bar = parallel::progress_bar(description);
  std::size_t done = 0, total = 0;
  while (std::scanf("%zu %zu", &done, &total) == 2) bar(done, total);
  return 0;
}

void usage() {
  std::fprintf(stderr,
               "usage: bench_compare --cell=KIND:PARAM:N[/VARIANT,...]... [--repetitions=N]\n"
               "                     [--min-time=S]\n"
               "                     --benchmark_out=FILE [Google Benchmark flags]\n"
               "       bench_compare --relay=TEXT   (draws \"done total\" lines of stdin)\n"
               "KIND: spin (PARAM ns a item), bytes (PARAM bytes a result), square, startup\n"
               "(square, for the per-call variants), slow_pow (PARAM ms of sleep), params,\n"
               "imap (spin items through imap),\n"
               "roundtrip (one call at a time), chunked (PARAM: chunksize), affine, ramp\n"
               "(PARAM: the largest item, ns), nested (PARAM inner items), fib (fib(PARAM)),\n"
               "tasks, progress (PARAM ns a item), paired (spin, each call of a variant next to\n"
               "one of the loop), idle (PARAM ms). VARIANT: runs only those\n"
               "(sequential, threads, omp, ...; all but the opt-in ones by default); \"paired\"\n"
               "in the list pairs them with the loop. Run by bench/compare.py, which chooses\n"
               "the grid; the header of bench/compare.cpp says more.\n");
}

}  // namespace

/// Spawned workers run this executable again: spawn_main, first, turns them into workers.
int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // The same allocator behaviour in every process and every run: blocks of 128 KiB and more are
  // always fresh mappings, smaller ones are reused from the heap, which is not trimmed during a
  // run (release_free_memory does that between runs). glibc's default raises the mmap threshold
  // after the first large free and trims the heap top as it goes, and then a variant that
  // happened to free its previous results reused their pages while another paid the first
  // touch of new ones: the 1 MiB results measured the allocator's memory of earlier runs
  // (threads 6x the sequential loop), and the 64 KiB ones varied 10x between repetitions.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  parallel::spawn_main(argc, argv);
#if PARALLEL_BENCH_MPI
  parallel::mpi_main(argc, argv);  // the ranks other than 0 serve the mpi variant's tasks here
#endif

  // Our flags out, Google Benchmark's on to benchmark::Initialize.
  settings s;
  std::vector<std::string> cells;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) {
      const std::string prefix = std::string(flag) + "=";
      return arg.rfind(prefix, 0) == 0 ? arg.substr(prefix.size()) : std::string();
    };
    if (!value("--relay").empty()) return relay(value("--relay"));
    if (!value("--cell").empty()) {
      cells.push_back(value("--cell"));
    } else if (!value("--repetitions").empty()) {
      s.repetitions = std::atoi(value("--repetitions").c_str());
    } else if (!value("--min-time").empty()) {
      s.min_time = std::atof(value("--min-time").c_str());
    } else if (arg == "-h" || arg == "--help") {
      usage();
      return 0;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (cells.empty() || s.repetitions < 1) {
    usage();
    return 2;
  }
  for (const auto& cell : cells) {
    if (!register_spec(cell, s)) {
      std::fprintf(stderr, "bench_compare: cannot read the cell '%s'\n", cell.c_str());
      usage();
      return 2;
    }
  }

  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  parallel_bench::warm_openmp();
  parallel_bench::warm_tbb();
  progress_of_runs = {.bar = parallel::progress_bar("C++ backends"),
                      .total = registered_benchmarks * static_cast<std::size_t>(s.repetitions),
                      .min_time = s.min_time};
  quiet_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  for (auto& close : pool_closers) close();
  return reporter.failed() ? 1 : 0;
}
