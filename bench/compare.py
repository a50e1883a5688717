#!/usr/bin/python3
"""The sequential loop against every pooled backend and the peers: ./scripts/bench.

    /usr/bin/python3 bench/compare.py [--quick] [--build DIR] [--out DIR] [--only REGEX]
                                      [--repetitions N] [--min-time S] [--budget S] [--no-python]
    /usr/bin/python3 bench/compare.py --render bench/results/compare.json [--out DIR]

Runs one grid of workloads through build/bench/bench/bench_compare (C++: the sequential loop,
parallel::threads, process_pool<fork|spawn|forkserver> reused, processes<...> per call, OpenMP,
oneTBB, std::execution::par; Google Benchmark), bench_compare_mpi under mpirun (parallel::mpi)
and bench/peers/compare_peers.py (Debian's /usr/bin/python3: its own loop,
multiprocessing.Pool with fork, spawn and forkserver, ProcessPoolExecutor, joblib). The
library's progress bar runs on stderr meanwhile. Then prints one table per family of the grid
(median speedup over the sequential loop of the same run, with min-max), a break-even summary,
the benchmark targets (met, MISSED, or not in this run), and writes to --out (default
bench/results/, --quick: bench/results/quick/):

  compare.md     the tables, with machine, load and method      compare.json  every timing
  speedup.svg    speedup against item cost, one line per backend and peer, the 2-core ideal
  scaling.svg    time against number of items, and against result size, per backend
  choose.svg     which backend for an item cost: the pick per cost range, from the same medians

Families (full mode; --quick in brackets):
  cost    items of 10 ns .. 10 ms, as many as ~100 ms [20 ms] of sequential work, 100 [10] to
          1e7 [2e6] items
  count   1 us items, 1e2 .. 1e6 [2e4] of them
  bytes   200 [50] results of 64 B .. 1 MiB each
  idioms  Python's idioms: Pool.map of square over 1e6 ints, slow_pow via Pool.starmap with
          100 ms sleeps on 5 workers (Pool(5), scaled from 1 s), 1 MiB results (the bytes
          family's last cell), Pool.imap over 1e4 [2000] parameter dicts
  latency fixed costs, in time per call next to the machine's floor measured in the same run
          (a raw socketpair round trip to a forked process): submit(f, x).get() one call at a
          time, 2000 [500] of them (Pool.apply, executor.submit(...).result() for Python), a
          map of 2e4 [2000] items at chunksize 1, a 50-item map of 64 B results, 1e5 tasks
          submitted then waited for, fib(30) with every call a task (parallel::join too), and
          the start of 2 workers, one item or 1e5, and their end, per call
  never_slower  1 .. 1e7 items of 1 ns .. 10 us each, the cells of at most ~100 ms [20 ms]
          of sequential work, through the sequential loop, parallel::threads and the C++ peers
          only: threads' speedup per cell, and the worst cell of each
  threads the thread backend's workloads, C++ only: tiny (x*3+1 over 1e7 ints), small (over
          1000), balanced (1e6 x 50 ns), cpu (the cost family's 100 us cell), irregular (400
          items of 1 us .. 1 ms, cheap first), nested (100 maps of 1000 x 1 us), imap (1e4
          x 100 ns through imap, in order), progress (200 x 1 ms with options.progress);
          tiny, balanced, imap, never_slower's largest 10 ns cell and the param dicts run
          the machine's limit beside each variant (bench/README.md)
  idle    the CPU time a pool's threads take in 1 s [0.25 s] of idleness after a map
  mpi     parallel::mpi on 3 ranks next to the process backends: 200 [40] items of 1 ms, 64
          [16] results of 1 MiB, 1000 [200] round trips (bench_compare_mpi under mpirun)
Full: 5 repetitions of >= 0.2 s, about 28 min on 2 cores; --quick: 3 of >= 0.01 s, about
140 s. Python peers whose run would exceed --budget (1.5 s; quick 0.3 s) are skipped and
listed (Python's own loop runs whenever one of them does: it is their baseline).
The pipeline is run -> results -> render: run() measures and returns every timing (compare.json),
render() makes the tables and plots from that alone, so --render rebuilds them from a
compare.json without running anything (a change of a table or a plot, an older run).
Exit status 1 when a benchmark failed. Python 3 standard library (+ python3-matplotlib for plots).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"  # Debian's, with python3-joblib; the python3 on PATH may lack it
PEERS_SCRIPT = HERE / "peers" / "compare_peers.py"

CPP_VARIANTS = [  # (key, label); the first is every C++ variant's baseline
    ("sequential", "sequential loop"), ("threads", "parallel::threads"),
    ("pool_fork", "process_pool<fork>"), ("pool_spawn", "process_pool<spawn>"),
    ("pool_forkserver", "process_pool<forkserver>"), ("per_call_fork", "processes<fork> per call"),
    ("per_call_spawn", "processes<spawn> per call"),
    ("per_call_forkserver", "processes<forkserver> per call"), ("mpi", "parallel::mpi"),
    ("join", "parallel::join"), ("thread_pool", "a thread_pool of its own"),
    ("threads_callback", "threads, progress callable"),
    ("threads_bar", "threads, progress_bar"), ("omp", "OpenMP static"),
    ("omp_dynamic", "OpenMP dynamic,1"), ("tbb", "oneTBB"), ("std_par", "std::execution::par"),
    ("socketpair", "raw socketpair round trip"),
    ("limit", "machine limit, beside threads")]
PY_VARIANTS = [  # the first is every Python peer's baseline
    ("py_sequential", "Python loop"), ("py_pool_fork", "Pool (fork)"),
    ("py_pool_spawn", "Pool (spawn)"), ("py_pool_forkserver", "Pool (forkserver)"),
    ("py_process_pool_executor", "ProcessPoolExecutor"), ("py_joblib", "joblib (loky)")]
LABELS = dict(CPP_VARIANTS + PY_VARIANTS)

MODES = {
    "full": {"repetitions": 5, "min_time": 0.2, "work_s": 0.1, "min_items": 100,
             "counts": [100, 1000, 10**4, 10**5, 10**6], "bytes_items": 200,
             "params": 10**4, "budget": 1.5, "roundtrips": 2000, "chunk1_items": 20000,
             "idle_ms": 1000, "mpi_items": 200, "mpi_results": 64, "mpi_roundtrips": 1000},
    # The quick count family ends at the cost family's 1 us cell (2e4 items), which runs once.
    "quick": {"repetitions": 3, "min_time": 0.01, "work_s": 0.02, "min_items": 10,
              "counts": [100, 1000, 10**4, 2 * 10**4], "bytes_items": 50, "params": 2000,
              "budget": 0.3, "roundtrips": 500, "chunk1_items": 2000, "idle_ms": 250,
              "mpi_items": 40, "mpi_results": 16, "mpi_roundtrips": 200},
}
COSTS_NS = [10, 100, 1000, 10**4, 10**5, 10**6, 10**7]
SIZES = [64, 4096, 65536, 1 << 20]
# The never_slower family: every number of items by every item cost, as long as the cell holds at
# most work_s of sequential work, through these variants only (the first is the baseline).
NEVER_SLOWER_COUNTS = [10**k for k in range(8)]
NEVER_SLOWER_COSTS_NS = [1, 10, 100, 1000, 10**4]
NEVER_SLOWER_VARIANTS = ["sequential", "threads", "omp", "tbb", "std_par"]
# The start-up cell: workers started, used and ended within the call. In C++ the per-call
# backends; in Python a pool made and closed around the map (with Pool(2) as p: ...).
STARTUP_ITEMS = 10**5
STARTUP_VARIANTS = ["sequential", "per_call_fork", "per_call_spawn", "per_call_forkserver"]
STARTUP_TARGET = 15  # Pool (fork) over processes<fork>, issue 14
# The thread backend's workloads: the C++ variants they run (the first is the baseline).
THREAD_VARIANTS = ["sequential", "threads", "omp", "tbb", "std_par"]
# The process backends without the C++ peers (a cell whose Python peers run: cpp_variants).
PROCESS_VARIANTS = ["sequential", "threads", "pool_fork", "pool_spawn", "pool_forkserver",
                    "per_call_fork", "per_call_spawn", "per_call_forkserver"]
# The mpi family runs in bench_compare_mpi under mpirun: 1 + 2 ranks, as many serving ranks as
# the process backends have workers here.
MPI_VARIANTS = ["sequential", "mpi", "pool_fork", "per_call_fork"]
MPI_RANKS = 3
# Kinds whose cells are read per unit of work (time per call, per task, per item), not as a
# speedup: the unit, and how many a cell holds.
PER_UNIT = {"roundtrip": "call", "tasks": "task", "chunked": "item", "fib": "call"}


def fib_calls(k):
    """Calls the naive recursion makes for fib(k): 2 fib(k + 1) - 1."""
    a, b = 0, 1
    for _ in range(k):
        a, b = b, a + b
    return 2 * b - 1


def units(c):
    """How many of its PER_UNIT units a cell's run does."""
    return c["n"] * fib_calls(c["param"]) if c["kind"] == "fib" else c["n"]

# --- the grid ---------------------------------------------------------------------------------


def fmt_count(n):
    if n < 1000:
        return str(n)
    exponent = len(str(n)) - 1
    mantissa = n / 10**exponent
    return f"{mantissa:g}e{exponent}"


def fmt_ns(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_bytes(size):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


def cell(kind, param, n, label, **extra):
    """A cell of the grid: its id is bench_compare's --cell (KIND:PARAM:N). Extra keys:
    variants (C++ only, these), cpp_variants (these in C++, and the Python peers), own_process
    (a bench_compare run of its own), role (what the targets call it), program "mpi" (run in
    bench_compare_mpi under mpirun; its id then starts with "mpi@", as a cell of its own run),
    paired (each variant's calls next to the loop's), limit (and the machine's limit beside
    them: a paired cell of map or imap)."""
    spec = f"{kind}:{param}:{n}"
    prefix = "mpi@" if extra.get("program") == "mpi" else ""
    return {"id": prefix + spec, "spec": spec, "kind": kind, "param": param, "n": n,
            "label": label, **extra}


def grid(mode):
    """[(family, title, [cell])]; a cell may be in two families (it runs once)."""
    m = MODES[mode]
    cost = []
    for ns in COSTS_NS:
        n = int(min(10**7, max(m["min_items"], round(m["work_s"] * 1e9 / ns))))
        cost.append(cell("spin", ns, n, f"{fmt_ns(ns)} x {fmt_count(n)}", role=f"cost_{ns}"))
    # Paired (its C++ variants): 1e7 results of 8 bytes in fresh memory, the loop's repetitions
    # took 56.8-229 ms in one run and read threads at 0.48x (0.36-4.74) next to 1.49x for the
    # same items paired in never_slower.
    cost[0]["paired"] = True
    count = [cell("spin", 1000, n, f"{fmt_count(n)} items") for n in m["counts"]]
    count[0]["role"] = "count_100"  # 100 items in either mode
    nb = m["bytes_items"]
    sizes = [cell("bytes", size, nb, f"{fmt_bytes(size)} x {nb}") for size in SIZES]
    sizes[-1]["role"] = "results_1mib"
    idioms = [cell("square", 0, 10**6, "square: x**2 over 1e6 ints", role="square"),
             cell("slow_pow", 100, 10, "slow_pow: 10 x 100 ms sleep, 5 workers"),
             dict(sizes[-1], label=f"{nb} results of 1 MiB"),
             # Paired, with the machine's limit beside each variant: its items allocate (a
             # dict each), and what two cores gave them moved from run to run (the limit
             # beside threads: medians of 1.31-1.56x the loop in runs within one hour).
             cell("params", 0, m["params"], f"imap over {fmt_count(m['params'])} param dicts",
                  role="params", paired=True, limit=True)]
    rt, c1 = m["roundtrips"], m["chunk1_items"]
    latency = [cell("roundtrip", 0, rt, f"submit + get, {fmt_count(rt)} one at a time",
                    role="roundtrip"),
               cell("chunked", 1, c1, f"map of {fmt_count(c1)} x + 1 at chunksize 1",
                    cpp_variants=PROCESS_VARIANTS, role="chunk1"),
               cell("bytes", 64, 50, "a 50-item map of 64 B results"),
               cell("tasks", 0, 10**5, "1e5 tasks: submit each, then get each",
                    variants=["sequential", "threads", "tbb"], role="tasks"),
               cell("fib", 30, 1, "fib(30), every call a task",
                    variants=["sequential", "threads", "join", "tbb"], role="fib"),
               cell("startup", 0, 1, "start 2 workers, one item, end them",
                    cpp_variants=STARTUP_VARIANTS, own_process=True, role="startup_one"),
               cell("startup", 0, STARTUP_ITEMS,
                    f"start 2 workers, x**2 over {fmt_count(STARTUP_ITEMS)} ints, end them",
                    cpp_variants=STARTUP_VARIANTS, own_process=True, role="startup")]
    never_slower = [
        cell("paired", ns, n, f"{fmt_count(n)} x {fmt_ns(ns)}", variants=NEVER_SLOWER_VARIANTS)
        for n in NEVER_SLOWER_COUNTS for ns in NEVER_SLOWER_COSTS_NS if n * ns <= m["work_s"] * 1e9]
    # Issue 15's 10 ns target reads the largest 10 ns cell here (1e7 items in full mode), paired,
    # with the machine's limit beside threads: the cost family's cell of the same items is not
    # paired, and its loop's repetitions ranged 106-188 ms in one run.
    ten = max((c for c in never_slower if c["param"] == 10), key=lambda c: c["n"])
    ten.update(role="never_10", limit=True)
    # Paired (bench/README.md), tiny and balanced too since every call's results are freed
    # before the next on both sides: unpaired, a loop's repetitions in a slow phase of the VM read
    # tiny 2.54x and balanced 2.36x on 2 cores (loop 7.8-23.8 and 29.7-52.1 ms a call); paired,
    # threads and every peer 1.28-1.30x and 1.75-1.83x (the loop against itself, alone: 0.99x).
    threads = [
        cell("affine", 0, 10**7, "tiny: x*3+1 over 1e7 ints",
             variants=THREAD_VARIANTS, role="tiny", paired=True, limit=True),
        cell("affine", 0, 1000, "small: x*3+1 over 1000 ints", variants=THREAD_VARIANTS,
             role="small", paired=True),
        cell("spin", 50, 10**6, "balanced: 1e6 x 50 ns", variants=THREAD_VARIANTS,
             role="balanced", paired=True, limit=True),
        dict(cost[4], label=f"cpu: {fmt_count(cost[4]['n'])} x 100 us", role="cpu"),
        cell("ramp", 10**6, 400, "irregular: 400 of 1 us .. 1 ms, cheap first",
             variants=THREAD_VARIANTS + ["omp_dynamic"], role="irregular", paired=True),
        cell("nested", 1000, 100, "nested: 100 maps of 1000 x 1 us", variants=THREAD_VARIANTS,
             role="nested", paired=True),
        cell("imap", 100, 10**4, "imap: 1e4 x 100 ns, in order",
             variants=THREAD_VARIANTS, role="imap", paired=True, limit=True),
        cell("paired", 10**6, 200, "progress: 200 x 1 ms",
             variants=["sequential", "threads", "threads_callback", "threads_bar"],
             role="progress")]
    idle = [cell("idle", m["idle_ms"], 1000,
                 f"{fmt_ns(m['idle_ms'] * 1e6)} idle after a map of 1000 x 10 us",
                 variants=["threads", "thread_pool", "omp", "tbb"], role="idle",
                 own_process=True)]
    mi, mr, mt = m["mpi_items"], m["mpi_results"], m["mpi_roundtrips"]
    mpi = [cell("spin", 10**6, mi, f"{mi} x 1 ms", variants=MPI_VARIANTS, program="mpi"),
           cell("bytes", 1 << 20, mr, f"{mr} results of 1 MiB", variants=MPI_VARIANTS,
                program="mpi"),
           cell("roundtrip", 0, mt, f"submit + get, {fmt_count(mt)} one at a time",
                variants=MPI_VARIANTS, program="mpi")]
    return [("cost", "Speedup against item cost (items of ~cost each; speedup over the "
             "sequential loop of the same run)", cost),
            ("count", "Speedup against number of items (1 us items)", count),
            ("bytes", f"Speedup against result size ({nb} results of each size)", sizes),
            ("idioms", "Python idioms: Pool.map, Pool.starmap, large results, Pool.imap", idioms),
            ("latency", "Fixed costs: time per call (median, min-max), and against one raw "
             "socketpair round trip of the same run", latency),
            ("never_slower", "Never slower than the sequential loop: parallel::threads map over "
             f"items x item costs (cells of up to {fmt_ns(m['work_s'] * 1e9)} of sequential work; "
             "speedup over the sequential loop of the same run)", never_slower),
            ("threads", "The thread backend's workloads, next to OpenMP, oneTBB and "
             "std::execution::par (speedup over the sequential loop of the same run)", threads),
            ("idle", "What a pool burns while idle: CPU seconds of the other threads during the "
             "idle period (max over the repetitions)", idle),
            ("mpi", f"parallel::mpi across {MPI_RANKS} ranks (2 serving), next to the process "
             "backends of the same run (bench_compare_mpi under mpirun; speedup, or time per "
             "call)", mpi)]


def unique_cells(families):
    """Each cell once; a cell runs only its "variants" (C++ ones: no Python peer) if every family
    that has it names them, and then those of all of them."""
    merged = {}
    for _, _, cells in families:
        for c in cells:
            seen = merged.setdefault(c["id"], dict(c))
            if "variants" in seen and "variants" in c:
                seen["variants"] = sorted(set(seen["variants"]) | set(c["variants"]))
            else:
                seen.pop("variants", None)
    return list(merged.values())


# What a reader needs to know to read a family's table, printed under it.
FAMILY_NOTES = {
    "cost": ["C++ items run parallel_bench::spin (dependent multiply-xorshift rounds, the same "
             "code in every variant); 'loop, per item' is what an item measured in the sequential "
             "loop. Python items are a busy loop calibrated to the same cost, down to the cost of "
             "a Python call."],
    "count": ["The same 1 us items; a backend's fixed cost per call is what separates the "
              "columns on the left."],
    "bytes": ["Each item builds a result of that size (std::vector<char> / bytes) filled from "
              "the item; through the process backends every result crosses back to the caller."],
    "latency": ["A round trip is one call of x + 1 that waits for its result before the next; "
                "the raw socketpair row is that call to a forked process through a socketpair, "
                "both sides blocking in read(): what one message each way costs on this machine. "
                "'x floor' divides by its median. The process pools' columns run on 2 workers "
                "(all cores).",
                "The chunksize-1 map sends every item as a task of its own (Pool.map(f, xs, "
                "chunksize=1) in Python). The 1e5 tasks are submitted from outside the pool, each "
                "future kept, then all waited for (apply_async then get; oneTBB: task_group::run "
                "then wait, no futures). fib(30) makes 2,692,537 calls; every call of n >= 2 "
                "submits fib(n-1) and waits for it inside the pool (parallel::join: joins both "
                "halves at every call; oneTBB: a task_group per call); the loop is the plain "
                "recursion.",
                "The start-up cell starts its workers in the call and ends them before it "
                "returns: processes<...> per call in C++; in Python a pool made and closed "
                "around the map (with Pool(2) as p: p.map(square, xs)); the loops are there for "
                "scale. It runs in a program of its own on each side: a fork costs more in a "
                "larger process (here ~60 us more per MiB the parent has mapped), and the "
                "grid's, after the other cells, took about twice as long on both sides."],
    "never_slower": ["Only the sequential loop, parallel::threads and the C++ peers run these "
                     "cells (- : more sequential work than the title's limit). A 1 ns item is one "
                     "spin round: 'loop, per item' is what an item measured in the sequential "
                     "loop, in each column's largest cell. Paired: each repetition of a variant "
                     "runs batches of ~5 ms of its calls, each followed by as many calls of the "
                     "loop, every call's results freed before the next call on both sides, and "
                     "its speedup is the loop's time over its own in that repetition "
                     "(median, min-max over the repetitions). This VM's speed changes by up to "
                     "1.8x for seconds at a time, and a ratio of two repetitions seconds apart "
                     "measured that (10 x 1 ns: 0.64-1.17x between runs of one build)."],
    "threads": ["The workloads the thread backend is tuned on. tiny and small: an item costs "
                "less than a cache miss (tiny: memory bandwidth and the first touch of 40 MB of "
                "results; small: the fixed cost of a call, ~0.3 us of work in all). irregular: "
                "item i costs 1 + 999 (i/399)^3 us, a static split gives one thread 94% of the "
                "work (OpenMP dynamic,1 is the load-balancing peer). nested: each outer item maps "
                "its inner items on the same pool (oneTBB nests too; OpenMP and "
                "std::execution::par run the outer loop in parallel only). imap: the results taken "
                "one at a time in input order as they come (the peers, which have no imap, run "
                "the same items as a map). progress: the cost of "
                "options.progress, a (done, total) callable or parallel::progress_bar (whose "
                "lines go to stderr with the run's own bar); its cell is paired, as "
                "never_slower's are, and the cost is threads' speedup over the variant's.",
                "machine limit (tiny, balanced and imap): what the cores gave at that moment, "
                "timed after each batch of the loop in every variant's repetitions; the row is "
                "the one beside threads'. The caller and one thread per other core (a team kept "
                "for the run) run one contiguous slice of the items each, nothing shared, from a "
                "common start; when the first ends, the items all had done by then are the "
                "cores' rate, and its time is the results' allocation plus every item at that "
                "rate (no tail, no scheduler). A speedup under it is what a backend lost to its "
                "own costs, and a target above it could not be met in that run; the targets "
                "compare threads with a peer here from their shares of the limit beside each. "
                "imap's is its items run as a map: the imap also hands each result to the "
                "caller, in order."],
    "idle": ["One map of 1000 items of ~10 us wakes every worker, then the calling thread "
             "sleeps; the CPU time every other thread of the process took meanwhile, read from "
             "each thread's own CPU clock, is the figure (max over the repetitions, with the "
             "median). A pool that spins or polls "
             "shows; one whose workers block shows ~0. Each run starts 300 ms after the one "
             "before, so that OpenMP's and oneTBB's spinning workers have gone to sleep. The "
             "cell runs in a program of its own, where no process pool's threads are alive."],
    "mpi": ["A program of its own (bench_compare_mpi, the same code with the mpi variant) under "
            f"mpirun -np {MPI_RANKS}: rank 0 runs every variant, the other ranks serve "
            "parallel::mpi's tasks; the process backends run 2 workers. Speedups are over that "
            "run's sequential loop; the round trip is time per call."],
    "idioms": ["slow_pow sleeps, so its ideal is 5x on 5 workers (threads{.workers = 5}, pools of "
              "5, OpenMP num_threads(5), a oneTBB task_arena of 5; std::execution::par cannot be "
              "given a thread count and runs on oneTBB's 2).",
              "The OpenMP, oneTBB and std::execution::par columns of starmap and imap run the "
              "same function into a vector: they have neither verb. Python's imap uses each "
              "library's default chunksize, as a call without one does (Pool.imap: 1).",
              "The param dicts' cell is paired, with the machine's limit beside each C++ "
              "variant (the threads family's note): its items allocate a dict each, and what "
              "two cores gave them moved from run to run (the limit beside threads, medians of "
              "5 repetitions: 1.31-1.56x the loop in runs of the cell within one hour on "
              "2026-12-07)."],
}

# --- the machine and its load -----------------------------------------------------------------


def machine():
    """The CPU model, the cores (all, and those this process may run on) and the system."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "usable": usable,
            "system": f"{platform.system()} {platform.release()}"}


def compiler(build):
    try:
        cache = (build / "CMakeCache.txt").read_text()
        cxx = re.search(r"^CMAKE_CXX_COMPILER:\w+=(.*)$", cache, re.M).group(1)
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
        return version.splitlines()[0]
    except (OSError, AttributeError, IndexError):
        return "unknown"


class LoadMeter:
    """The load average at both ends of a phase, and how many cores other processes kept busy
    during it: the machine's busy time (/proc/stat) less this program's and its children's."""

    def __init__(self):
        self.start_load = os.getloadavg()
        self.start_busy = self.busy_s()
        self.start_ours = self.ours_s()
        self.start = time.monotonic()

    @staticmethod
    def busy_s():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def ours_s():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def stop(self):
        wall = time.monotonic() - self.start
        others = max(0.0, (self.busy_s() - self.start_busy) - (self.ours_s() - self.start_ours))
        return {"seconds": wall, "load_before": list(self.start_load),
                "load_after": list(os.getloadavg()), "other_cores": others / wall if wall else 0}


NOISY_CORES = 0.25  # other processes' use of the machine above which a phase is flagged


def fmt_load(phase):
    text = (f"load average {phase['load_before'][0]:.2f} -> {phase['load_after'][0]:.2f}; "
            f"other processes kept {phase['other_cores']:.2f} cores busy; "
            f"{phase['seconds']:.0f} s")
    if phase["other_cores"] > NOISY_CORES:
        text += (" - NOT QUIET: the backends competed with other work for the cores; re-run "
                 "on a quiet machine before quoting these speedups")
    return text


# --- running ----------------------------------------------------------------------------------


def cell_arg(c):
    """bench_compare's --cell: the cell, and the only variants it runs if it names them; "paired"
    in the list when the cell is (each variant's calls next to the loop's, in batches), "limit"
    when the machine's limit runs beside them (a cell whose variants are not named: every one)."""
    chosen = list(c.get("variants", c.get("cpp_variants")) or [])
    if c.get("limit"):
        chosen.append("limit")
    if c.get("paired"):
        chosen.append("paired")
    variants = f"/{','.join(chosen)}" if chosen else ""
    return f"--cell={c['spec']}{variants}"


def mpirun():
    """The mpirun command line for MPI_RANKS ranks on this machine (as root, Open MPI needs to
    be told that is meant), or None when there is no mpirun."""
    found = shutil.which("mpirun")
    if not found:
        return None
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return [found, *root, "--oversubscribe", "-np", str(MPI_RANKS)]


def run_cpp(exe, cells, args, raw, name="cpp", launcher=(), prefix=""):
    """Runs bench_compare (under `launcher`, e.g. mpirun); returns ({prefix + cell: {variant:
    {"seconds": [...]} | {"error": text}}}, failure text or None). Counters (cpu_s) are kept
    next to the seconds."""
    out = raw / f"{name}.json"
    command = [*launcher, str(exe), *(cell_arg(c) for c in cells),
               f"--repetitions={args.repetitions}", f"--min-time={args.min_time}",
               f"--benchmark_out={out}", "--benchmark_out_format=json",
               "--benchmark_enable_random_interleaving=true"]
    status = subprocess.run(command, stdout=subprocess.DEVNULL).returncode
    failure = f"{exe.name} exited with status {status}" if status else None
    results = {}
    try:
        document = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return results, failure or f"bench_compare wrote no results ({e})"
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    for entry in document.get("benchmarks", []):
        if entry.get("run_type", "iteration") != "iteration":
            continue
        cell_id, variant = entry.get("run_name", entry["name"]).split("/")[:2]
        slot = results.setdefault(prefix + cell_id, {}).setdefault(variant, {"seconds": []})
        if entry.get("error_occurred"):
            slot["error"] = entry.get("error_message", "error")
        else:
            # A paired run (cells of kind paired): its time and the loop's are of a batch of
            # `calls` calls each.
            calls = entry.get("calls", 1)
            slot["seconds"].append(entry["real_time"] * scale[entry.get("time_unit", "ns")]
                                   / calls)
            if "loop_s" in entry:
                slot.setdefault("loop_s", []).append(entry["loop_s"] / calls)
            if "limit_s" in entry:
                slot.setdefault("limit_s", []).append(entry["limit_s"] / calls)
            if "others_per_loop_s" in entry:
                slot.setdefault("others", []).append(entry["others_per_loop_s"])
            if "cpu_s" in entry:
                slot.setdefault("cpu_s", []).append(entry["cpu_s"])
    return results, failure


def run_python(exe, cells, args, raw, name="python"):
    """Runs compare_peers.py, its progress drawn by `bench_compare --relay`; returns (results as
    run_cpp's, with "skipped" entries, the peers' JSON document, failure text or None)."""
    cells_file = raw / f"{name}_cells.json"
    cells_file.write_text(json.dumps(cells))
    read_end, write_end = os.pipe()
    relay = subprocess.Popen([str(exe), "--relay=Python peers"], stdin=read_end)
    os.close(read_end)
    peers = subprocess.Popen(
        [PYTHON, str(PEERS_SCRIPT), "--cells", str(cells_file), "--repetitions",
         str(args.repetitions), "--budget", str(args.budget), "--progress-fd", str(write_end)],
        stdout=subprocess.PIPE, text=True, pass_fds=(write_end,))
    os.close(write_end)
    stdout, _ = peers.communicate()
    relay.wait()
    if peers.returncode:
        return {}, None, f"compare_peers.py exited with status {peers.returncode}"
    document = json.loads(stdout)
    (raw / f"{name}.json").write_text(json.dumps(document, indent=1))
    results = {}
    for r in document["records"]:
        results.setdefault(r["cell"], {})[r["peer"]] = (
            {"skipped": r["skipped"]} if "skipped" in r else {"seconds": r["seconds"]})
    return results, document, None


def python_missing():
    if not os.access(PYTHON, os.X_OK):
        return f"{PYTHON} not found (install python3 python3-joblib)"
    probe = subprocess.run([PYTHON, "-c", "import joblib"], capture_output=True)
    return "install python3-joblib" if probe.returncode else None


# --- summaries and tables ---------------------------------------------------------------------


def summarise(results):
    """Adds median, min, max and the speedup (median, low, high) over the baseline of the same
    run to every timed entry. The range is the baseline's median over the entry's max and min.
    A paired entry (loop_s: the loop's time in the same repetitions) has the median, min and max
    of its repetitions' own ratios instead. The machine limit's entry is made from the limit's
    batches beside threads' (limit_s, in the same repetitions)."""
    for by_variant in results.values():
        threads = by_variant.get("threads", {})
        if threads.get("limit_s") and threads.get("loop_s") and "error" not in threads:
            by_variant["limit"] = {"seconds": threads["limit_s"], "loop_s": threads["loop_s"]}
        for key, entry in by_variant.items():
            # A variant's speed as a share of the limit beside it, repetition by repetition.
            if key != "limit" and entry.get("limit_s") and entry.get("seconds"):
                entry["of_limit"] = statistics.median(
                    limit / own for limit, own in zip(entry["limit_s"], entry["seconds"]))
        for baseline, variants in (("sequential", CPP_VARIANTS), ("py_sequential", PY_VARIANTS)):
            base = by_variant.get(baseline, {}).get("seconds")
            base_median = statistics.median(base) if base else None
            for key, _ in variants:
                entry = by_variant.get(key)
                if not entry or not entry.get("seconds") or "error" in entry:
                    continue
                s = entry["seconds"]
                entry.update(median=statistics.median(s), min=min(s), max=max(s))
                if entry.get("cpu_s"):
                    entry.update(cpu_s_median=statistics.median(entry["cpu_s"]),
                                 cpu_s_max=max(entry["cpu_s"]))
                if entry.get("loop_s"):
                    ratios = [loop / own for loop, own in zip(entry["loop_s"], s)]
                    entry["speedup"] = [statistics.median(ratios), min(ratios), max(ratios)]
                elif base_median:
                    entry["speedup"] = [base_median / entry["median"], base_median / entry["max"],
                                        base_median / entry["min"]]


def fmt_seconds(s):
    return fmt_ns(s * 1e9)


def table_cell(entry, baseline):
    if entry is None:
        return "-"
    if "error" in entry:
        return "error"
    if "skipped" in entry:
        return "skipped"
    if "median" not in entry:
        return "-"
    if baseline:
        return f"{fmt_seconds(entry['median'])} ({fmt_seconds(entry['min'])}-" \
               f"{fmt_seconds(entry['max'])})"
    if "speedup" not in entry:
        return fmt_seconds(entry["median"])
    median, low, high = entry["speedup"]
    return f"{median:.2f}x ({low:.2f}-{high:.2f})"


def per_unit_text(entry, c):
    """A PER_UNIT cell's figure: the median time per unit (min-max) and the unit."""
    per = units(c)
    return f"{fmt_seconds(entry['median'] / per)} ({fmt_seconds(entry['min'] / per)}-" \
           f"{fmt_seconds(entry['max'] / per)}) /{PER_UNIT[c['kind']]}"


def latency_table(cells, results):
    """(header, rows) for the latency family: time per call (per task, per item), and over the
    socketpair floor where a call crosses to a worker."""
    header = ["backend"] + [c["label"] for c in cells]
    floor = None
    for c in cells:
        entry = results.get(c["id"], {}).get("socketpair", {})
        if c["kind"] == "roundtrip" and "median" in entry:
            floor = entry["median"] / c["n"]
    rows = []
    for key, label in CPP_VARIANTS + PY_VARIANTS:
        row = [label]
        for c in cells:
            entry = results.get(c["id"], {}).get(key)
            if not entry or "median" not in entry:
                row.append(table_cell(entry, False) if entry else "-")
                continue
            if c["kind"] not in PER_UNIT:
                row.append(f"{fmt_seconds(entry['median'])} ({fmt_seconds(entry['min'])}-"
                           f"{fmt_seconds(entry['max'])})")
                continue
            text = per_unit_text(entry, c)
            if floor and c["kind"] in ("roundtrip", "chunked"):
                text += f", {entry['median'] / units(c) / floor:.2f}x floor"
            row.append(text)
        if any(x != "-" for x in row[1:]):
            rows.append(row)
    return header, rows


def family_table(cells, results):
    """(header, rows): one row per backend and peer, one column per cell; a PER_UNIT cell shows
    time per unit rather than a speedup."""
    header = ["backend"] + [c["label"] for c in cells]
    rows = []
    for variants, lang in ((CPP_VARIANTS, "C++"), (PY_VARIANTS, "Python")):
        per_item = [f"{lang} loop, per item"]
        for c in cells:
            entry = results.get(c["id"], {}).get(variants[0][0], {})
            per_item.append(fmt_seconds(entry["median"] / c["n"]) if "median" in entry else "-")
        if all(x == "-" for x in per_item[1:]):
            continue
        rows.append(per_item)
        for i, (key, label) in enumerate(variants):
            row = [label]
            for c in cells:
                entry = results.get(c["id"], {}).get(key)
                if c["kind"] in PER_UNIT and entry and "median" in entry:
                    row.append(per_unit_text(entry, c))
                else:
                    row.append(table_cell(entry, i == 0))
            if any(x != "-" for x in row[1:]):
                rows.append(row)
    return header, rows


def idle_table(cells, results):
    """(header, rows) for idle: CPU seconds of the other threads, max (median) per variant."""
    header = ["backend"] + [f"CPU s in {c['label']}: max (median)" for c in cells]
    rows = []
    for key, label in CPP_VARIANTS:
        entries = [results.get(c["id"], {}).get(key) for c in cells]
        if all(e is None for e in entries):
            continue
        rows.append([label] + [
            f"{e['cpu_s_max']:.6f} ({e['cpu_s_median']:.6f})" if e and "cpu_s_max" in e
            else table_cell(e, False) for e in entries])
    return header, rows


def never_slower_table(cells, results):
    """(header, rows) for never_slower: parallel::threads' speedup, one row per number of items,
    one column per item cost; then what an item measured in the loop, in each column's largest
    cell."""
    costs = sorted({c["param"] for c in cells})
    at = {(c["n"], c["param"]): c for c in cells}
    rows = []
    for n in sorted({c["n"] for c in cells}):
        entries = [results.get(at[n, ns]["id"], {}).get("threads") if (n, ns) in at else None
                   for ns in costs]
        rows.append([fmt_count(n)] + [table_cell(e, False) for e in entries])
    per_item = ["loop, per item"]
    for ns in costs:
        largest = max((c for c in cells if c["param"] == ns), key=lambda c: c["n"])
        entry = results.get(largest["id"], {}).get("sequential", {})
        per_item.append(fmt_seconds(entry["median"] / largest["n"]) if "median" in entry else "-")
    return ["items"] + [fmt_ns(ns) for ns in costs], rows + [per_item]


TABLES = {"latency": latency_table, "never_slower": never_slower_table,
          "idle": idle_table}  # the others: family_table


def worst_cells(cells, results):
    """For parallel::threads and each C++ peer of never_slower: the lowest median speedup, and in
    how many cells it is under 1x."""
    lines = []
    for key in NEVER_SLOWER_VARIANTS[1:]:
        ran = [(results[c["id"]][key]["speedup"], c) for c in cells
               if "speedup" in results.get(c["id"], {}).get(key, {})]
        if not ran:
            continue
        (median, low, high), c = min(ran, key=lambda x: x[0][0])
        slower = sum(speedup[0] < 1 for speedup, _ in ran)
        who = "" if key == "threads" else f" of {LABELS[key]}"
        lines.append(f"worst cell{who}: {fmt_count(c['n'])} x {fmt_ns(c['param'])}: "
                     f"{median:.2f}x ({low:.2f}-{high:.2f}); under 1x in {slower} of "
                     f"{len(ran)} cells")
    return lines


def startup_ratio(cells, results):
    """How many times longer Python's Pool (fork) takes than processes<fork> in each start-up
    cell (against the target in the one of STARTUP_ITEMS items)."""
    lines = []
    for c in cells:
        if c["kind"] != "startup":
            continue
        ours = results.get(c["id"], {}).get("per_call_fork", {})
        theirs = results.get(c["id"], {}).get("py_pool_fork", {})
        if "median" in ours and "median" in theirs:
            ratio = theirs["median"] / ours["median"]
            target = f" (target >= {STARTUP_TARGET}x)" if c["n"] == STARTUP_ITEMS else ""
            lines.append(f"{c['label']}: Python's Pool (fork) takes {ratio:.1f}x as long as "
                         f"processes<fork>{target}")
    return lines


# A paired entry whose loop ran while other threads took more than this share of a core (the
# variant's pool still busy after settle_other_threads): its speedup is flattered, and says so.
SHARED_LOOP = 0.02


def family_notes(family, cells, results):
    """The lines under a family's table: its worst cells (never_slower), what a reader needs to
    know to read it, and every run skipped or failed."""
    notes = worst_cells(cells, results) if family == "never_slower" else []
    if family == "latency":
        notes += startup_ratio(cells, results)
    notes += FAMILY_NOTES.get(family, [])
    for c in cells:
        for key, entry in results.get(c["id"], {}).items():
            if "skipped" in entry:
                notes.append(f"{c['label']}: {LABELS.get(key, key)} skipped: {entry['skipped']}")
            if "error" in entry:
                notes.append(f"{c['label']}: {LABELS.get(key, key)} FAILED: {entry['error']}")
            shared = max(entry.get("others", [0]))
            if shared > SHARED_LOOP:
                notes.append(f"{c['label']}: {LABELS.get(key, key)}'s loop shared the cores: "
                             f"other threads took up to {shared:.0%} of a core while it was timed")
    return notes


# --- targets ----------------------------------------------------------------------------------


def targets(families, results):
    """[(group, target, status, measured)], status "met", "MISSED" or "n/a" (not in this run):
    the benchmark targets of the thread backend, the process backends and the start methods, read
    from the cells of the grid by their role."""
    by_role = {c["role"]: c for _, _, cells in families for c in cells if "role" in c}
    checks = []

    def entry(role, variant):
        c = by_role.get(role)
        e = results.get(c["id"], {}).get(variant, {}) if c else {}
        return e if "median" in e else None

    def check(group, name, needed, condition, detail):
        if any(x is None for x in needed):
            checks.append((group, name, "n/a", "not measured in this run"))
        else:
            checks.append((group, name, "met" if condition() else "MISSED", detail()))

    def speedup(e):
        return e["speedup"][0] if e and "speedup" in e else None

    def per_unit(role, e):
        return e["median"] / units(by_role[role])

    def by_speedups(a, b):
        """a's time over b's, from their speedups: in a paired cell each was measured next to
        the loop of its own repetitions, and their raw times came from different ones."""
        return speedup(b) / speedup(a)

    def by_limit(a, b):
        """a's time over b's, from their shares of the machine's limit beside each, when it ran
        beside both: the cores gave the two different rates in their different seconds (1e7 x
        10 ns: the limit beside threads 1.49x, beside oneTBB 1.76x, each at 99% of its own)."""
        return b["of_limit"] / a["of_limit"] if "of_limit" in a and "of_limit" in b else None

    def time_ratio(a, b):
        """a's time over b's: by_limit where the limit ran beside both, else by_speedups."""
        ratio = by_limit(a, b)
        return by_speedups(a, b) if ratio is None else ratio

    def shares(a, b, b_label):
        """How time_ratio(a, b) was read, when from the limit."""
        if by_limit(a, b) is None:
            return ""
        return (f" (each beside the machine limit: threads at {a['of_limit']:.0%} of it, "
                f"{b_label} at {b['of_limit']:.0%}; by the speedups {by_speedups(a, b):.2f}x)")

    def limit_text(th, limit):
        """The machine limit beside threads in the same cell, when it ran, and threads' speed
        as a share of it (median of the repetitions): a speedup target above the limit was out
        of reach in this run."""
        if not speedup(limit) or "of_limit" not in th:
            return ""
        return f" (machine limit {speedup(limit):.2f}x; threads at {th['of_limit']:.0%} of it)"

    g = "thread backend"
    th = entry("tiny", "threads")
    check(g, "tiny: threads <= 1.05x the sequential loop's time", [speedup(th)],
          lambda: 1 / speedup(th) <= 1.05,
          lambda: f"{1 / speedup(th):.2f}x" + limit_text(th, entry("tiny", "limit")))
    for peer in ("tbb", "omp"):
        p = entry("tiny", peer)
        check(g, f"tiny: threads no slower than {LABELS[peer]}", [speedup(th), speedup(p)],
              lambda: time_ratio(th, p) <= 1,
              lambda: f"{time_ratio(th, p):.2f}x" + shares(th, p, LABELS[peer]))
    for role in ("balanced", "cpu"):
        th, tbb, limit = entry(role, "threads"), entry(role, "tbb"), entry(role, "limit")
        check(g, f"{role}: threads >= 1.9x the sequential loop", [speedup(th)],
              lambda: speedup(th) >= 1.9, lambda: f"{speedup(th):.2f}x" + limit_text(th, limit))
        check(g, f"{role}: threads within 1.1x of oneTBB's time", [speedup(th), speedup(tbb)],
              lambda: time_ratio(th, tbb) <= 1.1,
              lambda: f"{time_ratio(th, tbb):.2f}x" + shares(th, tbb, "oneTBB"))
    th = entry("small", "threads")
    check(g, "small: threads' median <= 1 us", [th], lambda: th["median"] <= 1e-6,
          lambda: fmt_seconds(th["median"]))
    th = entry("irregular", "threads")
    for peer in ("omp_dynamic", "tbb"):
        p = entry("irregular", peer)
        check(g, f"irregular: threads at least as fast as {LABELS[peer]}",
              [speedup(th), speedup(p)], lambda: time_ratio(th, p) <= 1,
              lambda: f"{time_ratio(th, p):.2f}x")
    th = entry("tasks", "threads")
    check(g, "tasks: submit + get <= 300 ns per task", [th],
          lambda: per_unit("tasks", th) <= 300e-9, lambda: fmt_seconds(per_unit("tasks", th)))
    for variant, limit in (("threads", 10e-9), ("join", 3e-9)):
        e = entry("fib", variant)
        check(g, f"fib(30): {LABELS[variant]} <= {limit * 1e9:g} ns per call", [e],
              lambda: per_unit("fib", e) <= limit, lambda: fmt_seconds(per_unit("fib", e)))
    th = entry("progress", "threads")
    for variant in ("threads_callback", "threads_bar"):
        e = entry("progress", variant)
        # From the speedups: paired (each over the loop of its own repetitions), a 1% cost is
        # not lost in the VM's drift from one repetition to the next (a run's medians differed
        # by +2.5% where 15 alternating repetitions of each differed by -0.2% .. +0.3%).
        check(g, f"progress: {LABELS[variant]} costs < 1% on 1 ms items", [th, e],
              lambda: speedup(th) < 1.01 * speedup(e),
              lambda: f"{(speedup(th) / speedup(e) - 1) * 100:+.2f}%")
    # Below 100 us of CPU in the idle period is a pool's workers spinning briefly before they
    # block, not a pool that keeps polling.
    e = entry("idle", "thread_pool")
    check(g, "idle: a thread_pool burns no CPU while idle (< 0.0001 s, every repetition)", [e],
          lambda: e["cpu_s_max"] < 1e-4, lambda: f"max {e['cpu_s_max']:.6f} s")
    never = [results.get(c["id"], {}).get("threads", {}) for f, _, cells in families
             if f == "never_slower" for c in cells]
    never = [e["speedup"][0] for e in never if "speedup" in e]
    check(g, "never_slower: threads >= 0.95x the sequential loop in every cell",
          [min(never) if never else None], lambda: min(never) >= 0.95,
          lambda: f"worst {min(never):.2f}x, under 0.95x in {sum(s < 0.95 for s in never)} of "
                  f"{len(never)} cells")
    th, tbb = entry("never_10", "threads"), entry("never_10", "tbb")
    ten = by_role.get("never_10")
    check(g, f"10 ns x {fmt_count(ten['n']) if ten else '?'} (never_slower, paired): threads >= "
          "1.1x the loop and >= oneTBB", [speedup(th), speedup(tbb)],
          lambda: speedup(th) >= 1.1 and time_ratio(th, tbb) <= 1,
          lambda: f"{speedup(th):.2f}x; {time_ratio(th, tbb):.2f}x oneTBB's time"
                  + shares(th, tbb, "oneTBB")
                  + limit_text(th, entry("never_10", "limit")))
    th = entry("count_100", "threads")
    check(g, "100 items of 1 us: threads >= 1.7x", [speedup(th)], lambda: speedup(th) >= 1.7,
          lambda: f"{speedup(th):.2f}x")
    for role, what in (("imap", "imap over 1e4 items of ~100 ns"),
                       ("params", "imap over the param dicts")):
        th = entry(role, "threads")
        check(g, f"{what}: threads >= 1.4x", [speedup(th)], lambda: speedup(th) >= 1.4,
              lambda: f"{speedup(th):.2f}x" + limit_text(th, entry(role, "limit")))

    g = "process backends"
    py_pool = entry("results_1mib", "py_pool_fork")
    for variant in ("pool_fork", "per_call_fork"):
        e = entry("chunk1", variant)
        check(g, f"chunksize 1: {LABELS[variant]} <= 5 us per item", [e],
              lambda: per_unit("chunk1", e) <= 5e-6, lambda: fmt_seconds(per_unit("chunk1", e)))
        e = entry("square", variant)
        check(g, f"x**2 over 1e6 ints: {LABELS[variant]} <= 0.3 us per item", [e],
              lambda: e["median"] / 1e6 <= 0.3e-6, lambda: fmt_seconds(e["median"] / 1e6))
        e = entry("cost_1000000", variant)
        check(g, f"1 ms items: {LABELS[variant]} >= 1.9x the sequential loop", [speedup(e)],
              lambda: speedup(e) >= 1.9, lambda: f"{speedup(e):.2f}x")
        e = entry("results_1mib", variant)
        check(g, f"1 MiB results: {LABELS[variant]} >= 10x the throughput of Pool (fork)",
              [e, py_pool], lambda: py_pool["median"] >= 10 * e["median"],
              lambda: f"{py_pool['median'] / e['median']:.1f}x")
    ours, theirs = entry("startup", "per_call_fork"), entry("startup", "py_pool_fork")
    check(g, f"start-up with 1e5 items: Pool (fork) >= {STARTUP_TARGET}x processes<fork>'s time",
          [ours, theirs], lambda: theirs["median"] >= STARTUP_TARGET * ours["median"],
          lambda: f"{theirs['median'] / ours['median']:.1f}x")

    g = "start methods"
    for variant, limit in (("per_call_fork", 2e-3), ("per_call_spawn", 20e-3),
                           ("per_call_forkserver", 3e-3)):
        e = entry("startup_one", variant)
        check(g, f"start 2 workers + one item + end: {LABELS[variant]} <= {limit * 1e3:g} ms",
              [e], lambda: e["median"] <= limit, lambda: fmt_seconds(e["median"]))
    ours, theirs = entry("startup_one", "per_call_spawn"), entry("startup_one", "py_pool_spawn")
    check(g, "start 2 workers + one item + end: processes<spawn> >= 5x faster than Pool (spawn)",
          [ours, theirs], lambda: theirs["median"] >= 5 * ours["median"],
          lambda: f"{theirs['median'] / ours['median']:.1f}x")
    fork = entry("roundtrip", "pool_fork")
    for variant in ("pool_spawn", "pool_forkserver"):
        e = entry("roundtrip", variant)
        check(g, f"round trip: {LABELS[variant]} within 25% of process_pool<fork>", [e, fork],
              lambda: e["median"] <= 1.25 * fork["median"],
              lambda: f"{e['median'] / fork['median']:.2f}x")
    return checks


def render_text(header, rows):
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_markdown(header, rows):
    code = lambda text: re.sub(r"([\w:]+<\w+>|std::execution::par|parallel::threads)", r"`\1`",
                               str(text).replace("|", "\\|"))
    lines = ["| " + " | ".join(code(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(code(c) for c in r) + " |" for r in rows])


def break_even(cost_cells, count_cells, results):
    """Per backend: the smallest item cost from which it is at least as fast as the sequential
    loop (and stays so at every larger cost), the same for 1.8x, and the smallest number of
    1 us items from which it is at least as fast."""
    def first(cells, key, threshold):
        found = None
        for c in reversed(cells):
            entry = results.get(c["id"], {}).get(key, {})
            if "speedup" not in entry or entry["speedup"][0] < threshold:
                break
            found = c
        return found

    header = ["backend", ">= 1x from item cost", ">= 1.8x from item cost",
              ">= 1x from (1 us items)"]
    rows = []
    for key, label in CPP_VARIANTS[1:] + PY_VARIANTS[1:]:
        if not any(key in results.get(c["id"], {}) for c in cost_cells + count_cells):
            continue
        cells = [first(cost_cells, key, 1.0), first(cost_cells, key, 1.8),
                 first(count_cells, key, 1.0)]
        text = [fmt_ns(cells[0]["param"]) if cells[0] else "never",
                fmt_ns(cells[1]["param"]) if cells[1] else "never",
                f"{fmt_count(cells[2]['n'])} items" if cells[2] else "never"]
        rows.append([label] + text)
    return header, rows


# --- main -------------------------------------------------------------------------------------


def run(args, mode, out):
    """Runs the grid (C++, then the Python peers) and returns the results document, which
    render() turns into tables and plots and compare.json keeps."""
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    exe = args.build / "bench" / "bench_compare"
    if not os.access(exe, os.X_OK):
        sys.exit(f"compare.py: {exe} not found: build it with ./scripts/bench, or cmake "
                 "-DCMAKE_BUILD_TYPE=Release -DPARALLEL_BUILD_BENCHMARKS=ON and the target "
                 "bench_compare")

    families = grid(mode)
    if args.only:
        families = [(f, t, [c for c in cells if re.search(args.only, f) or
                            re.search(args.only, c["id"])]) for f, t, cells in families]
        families = [x for x in families if x[2]]
    cells = unique_cells(families)

    info = machine()
    started = datetime.datetime.now(datetime.timezone.utc)
    heading = [
        f"{started:%Y-%m-%d %H:%M} UTC, {mode} mode: `./scripts/bench{' --quick' if args.quick else ''}`",
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable']} usable), "
        f"{info['system']}; {compiler(args.build)} -O2; Python {platform.python_version()}",
        f"load average at the start: {'{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())} "
        f"(1, 5, 15 min)",
        f"method: {args.repetitions} repetitions (C++: of >= {args.min_time} s each, interleaved "
        "at random by Google Benchmark; Python: every peer once per round, in random order), "
        "each after an untimed call on a tenth of the items; wall-clock medians (min-max); "
        "speedup = the sequential loop's median in the same run over the backend's",
    ]
    print("\n".join(heading), flush=True)

    failures = []
    meter = LoadMeter()
    # A cell that measures start-up runs in a program of its own on each side: what a fork
    # costs grows with the process that forks, and the grid's process, after the other cells,
    # doubled it on both sides.
    mpi_cells = [c for c in cells if c.get("program") == "mpi"]
    cells = [c for c in cells if c.get("program") != "mpi"]
    alone = [c for c in cells if c.get("own_process")]
    together = [c for c in cells if not c.get("own_process")]
    results, failure = run_cpp(exe, together, args, raw) if together else ({}, None)
    for c in alone:
        one, failure_alone = run_cpp(exe, [c], args, raw, name=f"cpp_{c['kind']}_{c['n']}")
        results.update(one)
        failure = failure or failure_alone
    phases = {"C++": meter.stop()}
    print(f"C++ phase: {fmt_load(phases['C++'])}", flush=True)
    if failure:
        failures.append(failure)
    mpi_note = None
    if mpi_cells:
        mpi_exe, launcher = args.build / "bench" / "bench_compare_mpi", mpirun()
        if not os.access(mpi_exe, os.X_OK):
            mpi_note = (f"not run: {mpi_exe} not built (it needs Open MPI: libopenmpi-dev "
                        "openmpi-bin; ./scripts/bench builds it when CMake finds MPI)")
        elif launcher is None:
            mpi_note = "not run: no mpirun on PATH (install openmpi-bin)"
        else:
            meter = LoadMeter()
            one, failure = run_cpp(mpi_exe, mpi_cells, args, raw, name="mpi", launcher=launcher,
                                   prefix="mpi@")
            results.update(one)
            phases["MPI"] = meter.stop()
            print(f"MPI phase: {fmt_load(phases['MPI'])}", flush=True)
            if failure:
                failures.append(failure)
    python_doc, python_note = None, None
    py_cells = [c for c in cells if "variants" not in c]
    if args.no_python:
        python_note = "not run (--no-python)"
    elif not py_cells:
        python_note = "no cell of this run has any"
    else:
        python_note = python_missing()
    if python_note is None:
        meter = LoadMeter()
        py_together = [c for c in py_cells if not c.get("own_process")]
        py_results, python_doc, failure = (run_python(exe, py_together, args, raw)
                                           if py_together else ({}, None, None))
        for c in (c for c in py_cells if c.get("own_process")):
            one, doc, failure_alone = run_python(exe, [c], args, raw, name=f"python_{c['kind']}")
            py_results.update(one)
            python_doc = python_doc or doc
            failure = failure or failure_alone
        phases["Python"] = meter.stop()
        print(f"Python phase: {fmt_load(phases['Python'])}", flush=True)
        if failure:
            failures.append(failure)
        for cell_id, by_peer in py_results.items():
            results.setdefault(cell_id, {}).update(by_peer)
    summarise(results)
    return {"mode": mode, "started": started.isoformat(timespec="seconds"), "machine": info,
            "heading": heading, "phases": phases, "repetitions": args.repetitions,
            "min_time": args.min_time, "budget": args.budget,
            "families": [{"name": f, "title": t, "cells": cs} for f, t, cs in families],
            "results": results, "python": python_doc and {
                k: v for k, v in python_doc.items() if k != "records"},
            "python_note": python_note, "mpi_note": mpi_note, "failures": failures}


def render(document, out):
    """The tables (printed, and compare.md in `out`) and the plots of a results document: what
    run() returned, or a compare.json read back (`--render`). Returns the files written."""
    results = document["results"]
    families = [(f["name"], f["title"], f["cells"]) for f in document["families"]]
    python_doc = document.get("python")
    python_note = document.get("python_note")
    markdown = ["# `parallel`: the sequential loop against every backend and peer", "",
                *[f"- {line}" for line in document["heading"]],
                *[f"- {name} phase: {fmt_load(p)}" for name, p in document["phases"].items()], ""]
    if python_doc:
        line = (f"Python {python_doc['python']} ({python_doc['executable']}), joblib "
                f"{python_doc['joblib']}: a Python call costs "
                f"{python_doc['call_floor_ns']:.0f} ns here, so Python items below that cost "
                "a call; Python speedups are over Python's own loop in the same run.")
        markdown += [line, ""]
    elif python_note:
        markdown += [f"Python peers: {python_note}", ""]
    for family, title, family_cells in families:
        header, rows = TABLES.get(family, family_table)(family_cells, results)
        print(f"\n== {family}: {title} ==\n{render_text(header, rows)}")
        markdown += [f"## {family}: {title}", "", render_markdown(header, rows), ""]
        notes = family_notes(family, family_cells, results)
        if family == "mpi" and document.get("mpi_note"):
            notes.insert(0, f"MPI: {document['mpi_note']}")
        for note in notes:
            print(f"  {note}")
        markdown += [f"- {note}" for note in notes] + ([""] if notes else [])

    by_family = {f: cs for f, _, cs in families}
    if "cost" in by_family:
        header, rows = break_even(by_family["cost"], by_family.get("count", []), results)
        print(f"\n== break-even: where each backend pays off (medians of this run) ==\n"
              f"{render_text(header, rows)}")
        markdown += ["## Break-even (medians of this run)", "", render_markdown(header, rows), ""]

    checks = targets(families, results)
    if any(status != "n/a" for _, _, status, _ in checks):
        header = ["group", "target", "status", "measured"]
        rows = [list(c) for c in checks]
        met = sum(status == "met" for _, _, status, _ in checks)
        measured = sum(status != "n/a" for _, _, status, _ in checks)
        summary = f"{met} of {measured} measured targets met ({len(checks) - measured} not in this run)"
        print(f"\n== targets (medians of this run) ==\n{render_text(header, rows)}\n  {summary}")
        markdown += ["## Targets (medians of this run)", "", render_markdown(header, rows), "",
                     f"- {summary}", ""]

    try:
        import compare_plot
        plots = compare_plot.plot(document, out)
        markdown += [f"![{p.stem}]({p.name})" for p in plots] + [""]
    except ImportError as e:
        plots = []
        print(f"no plots: {e} (install python3-matplotlib)")
    (out / "compare.md").write_text("\n".join(markdown) + "\n")
    return [out / "compare.md", *plots]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the smaller grid, ~2.5 min")
    parser.add_argument("--build", type=Path, default=HERE.parent / "build" / "bench",
                        help="the CMake build directory with bench/bench_compare")
    parser.add_argument("--out", type=Path, help="where the results go (bench/results/, "
                        "--quick: bench/results/quick/)")
    parser.add_argument("--only", help="regex on family names and cell ids, e.g. 'idioms|spin:10:'")
    parser.add_argument("--repetitions", type=int)
    parser.add_argument("--min-time", type=float, help="seconds per C++ repetition at least")
    parser.add_argument("--budget", type=float, help="seconds a Python peer's run may take")
    parser.add_argument("--no-python", action="store_true", help="leave out the Python peers")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="run nothing: rebuild the tables and plots from a compare.json "
                        "(into --out, default the JSON's folder)")
    args = parser.parse_args()
    if args.render:
        document = json.loads(args.render.read_text())
        summarise(document["results"])  # again, as this version reads a run's raw figures
        out = args.out or args.render.parent
        out.mkdir(parents=True, exist_ok=True)
        written = render(document, out)
        print(f"\nwrote {', '.join(str(p) for p in written)} from {args.render}")
        return 1 if document.get("failures") else 0
    mode = "quick" if args.quick else "full"
    for name in ("repetitions", "min_time", "budget"):
        if getattr(args, name) is None:
            setattr(args, name, MODES[mode][name])
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    document = run(args, mode, out)
    (out / "compare.json").write_text(json.dumps(document, indent=1))
    written = render(document, out)
    for failure in document["failures"]:
        print(f"FAILED: {failure}")
    print(f"\nwrote {out / 'compare.json'}, {', '.join(str(p) for p in written)}")
    return 1 if document["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
