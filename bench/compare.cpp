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
//   roundtrip:0:N      N calls of x + 1, one at a time: submit(f, x).get() back to back on the
//                      pools and on threads (a parallel::thread_pool); the variant `socketpair`
//                      is the machine's floor: a raw socketpair ping-pong with a forked process
//                      that computes the same x + 1 (8 bytes each way). No per-call or peer
//                      variants (they have no submit).
//
// Results go to the Google Benchmark JSON file named by --benchmark_out; on stderr, the
// library's own parallel::progress_bar advances with each repetition of each benchmark.
// `compare --relay=TEXT` draws the same bar for another program: it reads "done total" lines on
// stdin (compare.py feeds it the Python peers' progress).
//
// The sequential loop and the peers allocate their results as the library does
// (parallel_bench::fresh_results), so a ratio compares the same work. Every parallel variant's
// result is checked against the sequential one after timing. Before its
// timed loop each run makes one untimed call on a prefix of the items (a tenth, at least one per
// worker): runtimes awake, pages and code touched, the forkserver's server started.
// POSIX only (start::fork); main() starts with parallel::spawn_main.
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
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

#include <execution>
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

// --- one workload -----------------------------------------------------------------------------

/// Which verb a workload goes through: the one its Python version calls.
enum class verb { map, starmap, imap, submit };

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

  work(F fn, std::vector<In> in, int w) : f(fn), items(std::move(in)), workers(w) {
    const auto cores = static_cast<std::size_t>(std::max(1u, std::thread::hardware_concurrency()));
    const auto prefix =
        std::max(workers > 0 ? static_cast<std::size_t>(workers) : cores, items.size() / 10);
    warm.assign(items.begin(),
                items.begin() + static_cast<std::ptrdiff_t>(std::min(prefix, items.size())));
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
auto make_work(F f, std::vector<In> items, int workers) {
  return std::make_shared<const work<V, F, In>>(f, std::move(items), workers);
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

std::vector<int> iota_ints(std::size_t n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
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

template <class W>
auto run_sequential(const W& w, const std::vector<typename W::input>& items) {
  auto out = parallel_bench::fresh_results<typename W::result>(items.size(), false);
  for (const auto& x : items) out.push_back(call<W::how>(w.f, x));
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

/// parallel::map / starmap / imap with a policy (threads, processes<S> per call).
template <class W, class Policy>
auto run_policy(const W& w, const std::vector<typename W::input>& items, const Policy& policy) {
  if constexpr (W::how == verb::submit) {
    static parallel::thread_pool pool(w.workers);
    return submit_each(pool, w, items);
  } else if constexpr (W::how == verb::map) {
    return parallel::map(policy, w.f, items);
  } else if constexpr (W::how == verb::starmap) {
    return parallel::starmap(policy, w.f, items);
  } else {
    return collect(parallel::imap(policy, w.f, items), items.size());
  }
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
  } else if constexpr (W::how == verb::map) {
    return pool.map(w.f, items);
  } else if constexpr (W::how == verb::starmap) {
    return pool.starmap(w.f, items);
  } else {
    return collect(pool.imap(w.f, items), items.size());
  }
}

// The peers have no starmap or imap: they run the same function on each item into a vector.
#if PARALLEL_BENCH_HAVE_OPENMP
template <class W>
auto run_omp(const W& w, const std::vector<typename W::input>& items) {
  auto out = parallel_bench::fresh_results<typename W::result>(items.size());
  const auto n = static_cast<std::ptrdiff_t>(items.size());
  const int threads = w.workers > 0 ? w.workers : omp_get_num_procs();
  const auto* src = items.data();
  auto* dst = out.data();
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::ptrdiff_t i = 0; i < n; ++i) dst[i] = call<W::how>(w.f, src[i]);
  return out;
}
#endif

#if PARALLEL_BENCH_HAVE_TBB
template <class W>
auto run_tbb(const W& w, const std::vector<typename W::input>& items) {
  auto out = parallel_bench::fresh_results<typename W::result>(items.size());
  const auto* src = items.data();
  auto* dst = out.data();
  const auto& f = w.f;
  auto body = [&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, items.size()),
                      [=, &f](const tbb::blocked_range<std::size_t>& r) {
                        for (std::size_t i = r.begin(); i != r.end(); ++i) {
                          dst[i] = call<W::how>(f, src[i]);
                        }
                      });
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

// --- registration -----------------------------------------------------------------------------

struct settings {
  int repetitions = 3;
  double min_time = 0.1;
};

/// Every variant's name, for reading a cell's list of variants.
constexpr std::array<std::string_view, 12> variant_names = {
    "sequential",    "threads",        "pool_fork",           "pool_spawn", "pool_forkserver",
    "per_call_fork", "per_call_spawn", "per_call_forkserver", "omp",        "tbb",
    "std_par",       "socketpair"};

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

/// One timed run: an untimed call on the warm-up prefix, then the timed loop, then the check.
template <class W, class Run>
void timed(benchmark::State& state, const W& w, Run run) {
  release_free_memory();
  {
    auto warm = run(w, w.warm);
    parallel_bench::keep(warm);
  }
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

std::size_t registered_benchmarks = 0;

/// Registers "<cell>/<variant>" for every variant this build has and `wanted` names (all of
/// them when `wanted` is empty); `build` makes the cell's work.
template <class Build>
void register_cell(const std::string& cell, Build build, const settings& s,
                   const std::vector<std::string>& wanted) {
  using W = typename std::invoke_result_t<Build>::element_type;
  using items_t = std::vector<typename W::input>;
  const std::function<std::shared_ptr<const W>()> make = build;
  auto add = [&](const char* variant, auto run) {
    if (!wanted.empty() && std::ranges::find(wanted, variant) == wanted.end()) return;
    benchmark::RegisterBenchmark((cell + "/" + variant).c_str(),
                                 [cell, make, run](benchmark::State& state) {
                                   timed(state, *current_work(cell, make), run);
                                 })
        ->Apply(parallel_bench::defaults)
        ->Repetitions(s.repetitions)
        ->MinTime(s.min_time)
        ->Unit(benchmark::kMicrosecond);
    ++registered_benchmarks;
  };
  add("sequential", [](const W& w, const items_t& in) { return run_sequential(w, in); });
  add("threads", [](const W& w, const items_t& in) {
    return run_policy(w, in, parallel::threads{.workers = w.workers});
  });
  add("pool_fork", [](const W& w, const items_t& in) { return run_pool<fork>(w, in); });
  add("pool_spawn", [](const W& w, const items_t& in) { return run_pool<spawn>(w, in); });
  add("pool_forkserver", [](const W& w, const items_t& in) { return run_pool<forkserver>(w, in); });
  if constexpr (W::how == verb::submit) {
    add("socketpair", [](const W& w, const items_t& in) { return run_socketpair(w, in); });
    return;
  }
  add("per_call_fork", [](const W& w, const items_t& in) {
    return run_policy(w, in, parallel::processes<fork>{.workers = w.workers});
  });
  add("per_call_spawn", [](const W& w, const items_t& in) {
    return run_policy(w, in, parallel::processes<spawn>{.workers = w.workers});
  });
  add("per_call_forkserver", [](const W& w, const items_t& in) {
    return run_policy(w, in, parallel::processes<forkserver>{.workers = w.workers});
  });
#if PARALLEL_BENCH_HAVE_OPENMP
  add("omp", [](const W& w, const items_t& in) { return run_omp(w, in); });
#endif
#if PARALLEL_BENCH_HAVE_TBB
  add("tbb", [](const W& w, const items_t& in) { return run_tbb(w, in); });
  add("std_par", [](const W& w, const items_t& in) { return run_std_par(w, in); });
#endif
}

/// The variants of "VARIANT,VARIANT,..."; nullopt when one of them has no such name.
std::optional<std::vector<std::string>> read_variants(const std::string& list) {
  std::vector<std::string> names;
  for (std::size_t start = 0; start <= list.size();) {
    const auto comma = std::min(list.find(',', start), list.size());
    names.push_back(list.substr(start, comma - start));
    if (std::ranges::find(variant_names, names.back()) == variant_names.end()) return {};
    start = comma + 1;
  }
  return names;
}

/// Registers the cell "KIND:PARAM:N[/VARIANT,...]"; false when it does not parse.
bool register_spec(const std::string& text, const settings& s) {
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
  const auto count = static_cast<std::size_t>(n);
  if (k == "spin") {
    register_cell(
        spec,
        [=] {
          std::vector<std::uint64_t> items(count);
          std::iota(items.begin(), items.end(), std::uint64_t{0});
          return make_work<verb::map>(spin_item(param), std::move(items), 0);
        },
        s, *wanted);
  } else if (k == "bytes") {
    register_cell(
        spec, [=] { return make_work<verb::map>(bytes_item(param), iota_ints(count), 0); }, s,
        *wanted);
  } else if (k == "square" || k == "startup") {
    register_cell(
        spec, [=] { return make_work<verb::map>(square, iota_ints(count), 0); }, s, *wanted);
  } else if (k == "slow_pow") {
    register_cell(
        spec,
        [=] {
          std::vector<std::tuple<int, int>> xs;  // zip(xs, [2] * len(xs))
          for (int x : iota_ints(count)) xs.emplace_back(x, 2);
          return make_work<verb::starmap>(slow_pow(static_cast<int>(param)), std::move(xs), 5);
        },
        s, *wanted);
  } else if (k == "roundtrip") {
    (void)echo();  // before any pool: see echo()
    register_cell(
        spec,
        [=] {
          std::vector<std::uint64_t> items(count);
          std::iota(items.begin(), items.end(), std::uint64_t{0});
          return make_work<verb::submit>(increment, std::move(items), 0);
        },
        s, *wanted);
  } else if (k == "params") {
    register_cell(
        spec,
        [=] {
          std::vector<dict> params;  // {'param1': x, 'param2': 15}
          for (int x : iota_ints(count)) params.push_back(dict{{"param1", x}, {"param2", 15}});
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
               "roundtrip (one call at a time). VARIANT: runs only those (sequential,\n"
               "threads, omp, ...; all by default). Run by bench/compare.py, which chooses\n"
               "the grid.\n");
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
