#!/usr/bin/python3
"""The process workloads in Python: the bar the process backend is measured against.

    /usr/bin/python3 bench/peers/process_peers.py [--quick] [--repetitions N] [--only REGEX]
                                                  [--peers REGEX]

Runs each workload through multiprocessing.Pool ('fork' context), concurrent.futures.
ProcessPoolExecutor ('fork' context) and joblib.Parallel (its default loky backend), plus the
plain loop in this process where a sequential baseline makes sense, and prints one JSON document
on stdout: one record per (peer, workload) with the median, min and max over the repetitions and
the unit. Progress goes to stderr. Needs Debian's python3-joblib (joblib and loky); run it with
Debian's /usr/bin/python3, not another python3 first on PATH.

Workloads (the same as bench/process_map.cpp's):
  noop_chunk1      20000 no-op tasks at chunksize 1 on 2 workers            us per task
  noop_batched     1e6 no-op items, automatic chunksize, 2 workers           us per item
  cpu_1ms          200 items of ~1 ms CPU (calibrated busy loop), 2 workers  ms; speedup
  sleep_10ms       100 items of a 10 ms sleep on 4 workers                   ms (ideal 250)
  results_1mib     200 results of 1 MiB (bytes filled from i), 2 workers     GB/s of results
  startup          a pool of 2 workers + one task + shutdown                 ms
  roundtrip        1000 tasks one at a time on a warm pool of 2 (apply)      us per task
startup and roundtrip also run Pool with the 'spawn' and 'forkserver' contexts (joblib
has no one-task call on a warm pool, so it is not in roundtrip).
--quick: 3 repetitions instead of 5 and a quarter of the no-op tasks (5000 and 250000), about
40 s in all on 2 cores; the no-op figures are per task and per item, so they stay comparable.

How it is fair to Python:
  - Pools are persistent: created and warmed once per workload, outside the timing (except in
    `startup`, which times exactly that). joblib's loky executor is reusable and stays warm.
  - Every repetition runs every peer once, in a random order (the 2 vCPUs drift by up to 40%
    within minutes, so peers are interleaved rather than run one after the other); the first
    round is a warm-up and is not counted.
  - "Automatic chunksize" is each library's own rule: Pool.map's (len / (4 * workers)) and
    joblib's batch_size='auto'. ProcessPoolExecutor.map has no automatic chunksize (its
    default is 1, which would make noop_batched take minutes), so it is given Pool's rule.
  - Times are wall clock (time.perf_counter) around the whole call, results included.
"""

import argparse
import concurrent.futures
import functools
import json
import multiprocessing
import os
import platform
import random
import re
import statistics
import sys
import time

MIB = 1 << 20

# --- the item functions (module level, so that every backend can pickle them) ----------------


def noop(x):
    return x


def burn(x, loops):
    """A busy loop of `loops` iterations: ~1 ms with the loops calibrate() returns."""
    acc = x
    for i in range(loops):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


def nap(x):
    time.sleep(0.010)
    return x


def mebibyte(x):
    """1 MiB filled from x: the result has to be built, pickled, sent and unpickled."""
    return bytes((x & 255,)) * MIB


def pid_of_child(_):
    return os.getpid()


def calibrate(target_s=0.001):
    """Loops of burn() that take target_s on an undisturbed core: the fastest of many short
    timings, since on a busy machine a longer timing or a median counts other processes' turns."""
    loops = 1000
    while True:
        start = time.perf_counter()
        burn(0, loops)
        if time.perf_counter() - start > target_s:
            break
        loops *= 2
    fastest = min(timed(burn, loops) for _ in range(31))
    return max(1, round(loops * target_s / fastest))


def timed(fn, *args):
    start = time.perf_counter()
    fn(0, *args)
    return time.perf_counter() - start


# --- the peers --------------------------------------------------------------------------------


def pool_rule(n, workers):
    """multiprocessing.Pool.map's automatic chunksize."""
    chunksize, extra = divmod(n, workers * 4)
    return chunksize + 1 if extra else max(chunksize, 1)


class Sequential:
    name = "py_sequential"

    def __init__(self, workers):
        pass

    def map(self, fn, items, chunksize):
        return [fn(x) for x in items]

    def close(self):
        pass


class PoolFork:
    name = "py_pool_fork"

    def __init__(self, workers):
        self.pool = multiprocessing.get_context("fork").Pool(workers)

    def map(self, fn, items, chunksize):
        return self.pool.map(fn, items, chunksize)  # None: Pool's automatic chunksize

    def submit_one(self, fn, arg):
        return self.pool.apply(fn, (arg,))

    def close(self):
        self.pool.close()
        self.pool.join()


class PoolSpawn(PoolFork):
    name = "py_pool_spawn"

    def __init__(self, workers):
        self.pool = multiprocessing.get_context("spawn").Pool(workers)


class PoolForkserver(PoolFork):
    name = "py_pool_forkserver"

    def __init__(self, workers):
        self.pool = multiprocessing.get_context("forkserver").Pool(workers)


class ProcessPoolExecutorFork:
    name = "py_process_pool_executor"

    def __init__(self, workers):
        self.workers = workers
        self.executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("fork"))

    def map(self, fn, items, chunksize):
        chunksize = chunksize or pool_rule(len(items), self.workers)
        return list(self.executor.map(fn, items, chunksize=chunksize))

    def submit_one(self, fn, arg):
        return self.executor.submit(fn, arg).result()

    def close(self):
        self.executor.shutdown(wait=True)


class Joblib:
    name = "py_joblib"

    def __init__(self, workers):
        import joblib
        self.joblib = joblib
        self.workers = workers

    def map(self, fn, items, chunksize):
        parallel = self.joblib.Parallel(n_jobs=self.workers, batch_size=chunksize or "auto")
        return parallel(self.joblib.delayed(fn)(x) for x in items)

    def submit_one(self, fn, arg):
        return self.joblib.Parallel(n_jobs=self.workers)([self.joblib.delayed(fn)(arg)])[0]

    def close(self):
        # loky keeps one reusable executor alive between calls; shut it down for real, so that
        # `startup` pays for starting it again (reuse=True returns the existing one as it is).
        from joblib.externals.loky import get_reusable_executor
        get_reusable_executor(reuse=True).shutdown(wait=True)


PARALLEL_PEERS = [PoolFork, ProcessPoolExecutorFork, Joblib]
# The other start methods run in `startup` and `roundtrip` only.
START_METHOD_PEERS = [PoolSpawn, PoolForkserver]
ROUNDTRIP_TASKS = 1000

# --- the workloads ----------------------------------------------------------------------------


class Workload:
    """name, workers, items, fn, chunksize (None = automatic), unit, and how a time in seconds
    becomes a value in that unit."""

    def __init__(self, name, workers, items, fn, chunksize, unit, value, sequential=True,
                 speedup=True, **extra):
        self.name, self.workers, self.items, self.fn = name, workers, items, fn
        self.chunksize, self.unit, self.value, self.sequential = chunksize, unit, value, sequential
        self.speedup = sequential and speedup  # the no-op loops run in ~40 ns: no baseline
        self.extra = extra


def workloads(loops, quick):
    # --quick: a quarter of the no-op tasks (a whole round of those takes ~10 s at full size);
    # the figures are per task / per item, so they stay comparable.
    n1, nb, ncpu, nsleep, nmib = 20000, 1_000_000, 200, 100, 200
    if quick:
        n1, nb = n1 // 4, nb // 4
    return [
        Workload("noop_chunk1", 2, list(range(n1)), noop, 1, "us/task",
                 lambda s: s / n1 * 1e6, speedup=False, n=n1),
        Workload("noop_batched", 2, list(range(nb)), noop, None, "us/item",
                 lambda s: s / nb * 1e6, speedup=False, n=nb),
        Workload("cpu_1ms", 2, list(range(ncpu)), functools.partial(burn, loops=loops), None,
                 "ms", lambda s: s * 1e3, n=ncpu, loops_per_item=loops),
        Workload("sleep_10ms", 4, list(range(nsleep)), nap, None, "ms", lambda s: s * 1e3,
                 sequential=False, n=nsleep, ideal_ms=nsleep * 10 / 4),
        Workload("results_1mib", 2, list(range(nmib)), mebibyte, None, "GB/s",
                 lambda s: nmib * MIB / s / 1e9, n=nmib, result_bytes=MIB),
    ]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def summary(peer, workload, unit, values, times, **extra):
    return {"peer": peer, "workload": workload, "unit": unit,
            "median": statistics.median(values), "min": min(values), "max": max(values),
            "repetitions": len(values), "seconds": times, **extra}


def run_workload(w, peers, repetitions):
    """Every peer once per round, in random order; round 0 is the warm-up."""
    classes = ([Sequential] if w.sequential else []) + peers
    instances = [cls(w.workers) for cls in classes]
    times = {p.name: [] for p in instances}
    expected_head = [w.fn(x) for x in w.items[:3]]
    try:
        for round_ in range(repetitions + 1):
            random.shuffle(instances)
            for p in instances:
                start = time.perf_counter()
                out = p.map(w.fn, w.items, w.chunksize)
                seconds = time.perf_counter() - start
                if len(out) != len(w.items) or list(out[:3]) != expected_head:
                    raise RuntimeError(f"{p.name} returned wrong results for {w.name}")
                if round_:
                    times[p.name].append(seconds)
                del out
    finally:
        for p in instances:
            p.close()
    records = []
    sequential_s = statistics.median(times["py_sequential"]) if w.speedup else None
    for cls in classes:
        seconds = times[cls.name]
        extra = dict(w.extra, workers=w.workers,
                     chunksize=w.chunksize if w.chunksize else "automatic")
        if sequential_s and cls is not Sequential:
            extra["speedup"] = sequential_s / statistics.median(seconds)
        records.append(summary(cls.name, w.name, w.unit, [w.value(s) for s in seconds], seconds,
                               **extra))
    return records


def run_startup(peers, repetitions):
    """A pool of 2 workers, one task whose answer proves it ran in a child, and shutdown."""
    times = {cls.name: [] for cls in peers}
    order = list(peers)
    for round_ in range(repetitions + 1):
        random.shuffle(order)
        for cls in order:
            start = time.perf_counter()
            p = cls(2)
            child = p.submit_one(pid_of_child, 0)
            p.close()
            seconds = time.perf_counter() - start
            if child == os.getpid():
                raise RuntimeError(f"{cls.name}: the task ran in the parent")
            if round_:
                times[cls.name].append(seconds)
    return [summary(cls.name, "startup", "ms", [s * 1e3 for s in times[cls.name]],
                    times[cls.name], workers=2) for cls in peers]


def run_roundtrip(peers, repetitions):
    """ROUNDTRIP_TASKS tasks one at a time on a warm pool of 2 (apply / submit().result()): the
    latency of one call, in microseconds per task."""
    instances = [cls(2) for cls in peers]
    times = {p.name: [] for p in instances}
    try:
        for p in instances:
            p.submit_one(noop, 0)  # workers started and warm
        for round_ in range(repetitions + 1):
            random.shuffle(instances)
            for p in instances:
                start = time.perf_counter()
                total = sum(p.submit_one(noop, i) for i in range(ROUNDTRIP_TASKS))
                seconds = time.perf_counter() - start
                if total != ROUNDTRIP_TASKS * (ROUNDTRIP_TASKS - 1) // 2:
                    raise RuntimeError(f"{p.name} returned wrong results for roundtrip")
                if round_:
                    times[p.name].append(seconds)
    finally:
        for p in instances:
            p.close()
    return [summary(cls.name, "roundtrip", "us/task",
                    [s / ROUNDTRIP_TASKS * 1e6 for s in times[cls.name]], times[cls.name],
                    workers=2, n=ROUNDTRIP_TASKS) for cls in peers]


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 repetitions (default 5), a quarter of the no-op tasks (~40 s)")
    parser.add_argument("--repetitions", type=int, help="counted repetitions per peer")
    parser.add_argument("--only", help="regex on workload names, e.g. 'noop|startup'")
    parser.add_argument("--peers", help="regex on peer names, e.g. 'pool_fork|joblib' (the "
                        "sequential loop runs whenever a workload does)")
    args = parser.parse_args()
    repetitions = args.repetitions or (3 if args.quick else 5)

    try:
        import joblib
    except ImportError:
        sys.exit("process_peers.py: joblib is missing: apt-get install python3-joblib "
                 "(and run this with /usr/bin/python3)")

    loops = calibrate()
    selected = lambda name: not args.only or re.search(args.only, name)
    wanted = lambda cls: not args.peers or re.search(args.peers, cls.name)
    peers = [cls for cls in PARALLEL_PEERS if wanted(cls)]
    # joblib has no call of one task on a warm pool: each Parallel() call is a batch.
    start_peers = [cls for cls in PARALLEL_PEERS + START_METHOD_PEERS
                   if wanted(cls) and cls is not Joblib]
    records = []
    started = time.monotonic()
    for w in workloads(loops, args.quick):
        if selected(w.name):
            log(f"process_peers: {w.name} ...")
            records += run_workload(w, peers, repetitions)
    startup_peers = [cls for cls in PARALLEL_PEERS + START_METHOD_PEERS if wanted(cls)]
    if selected("startup") and startup_peers:
        log("process_peers: startup ...")
        records += run_startup(startup_peers, repetitions)
    if selected("roundtrip") and start_peers:
        log("process_peers: roundtrip ...")
        records += run_roundtrip(start_peers, repetitions)
    log(f"process_peers: done in {time.monotonic() - started:.1f} s")

    json.dump({"machine": machine(), "python": platform.python_version(),
               "executable": sys.executable, "joblib": joblib.__version__,
               "repetitions": repetitions, "burn_loops_per_ms": loops,
               "load_average": list(os.getloadavg()), "records": records},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
