#!/usr/bin/python3
"""The Python half of ./scripts/bench: the grid of bench/compare.py on Python's pools.

    /usr/bin/python3 bench/peers/compare_peers.py --cells FILE [--repetitions N] [--budget S]
                                                  [--progress-fd FD]

FILE is JSON: a list of cells {"id": "spin:1000:20000", "kind": "spin", "param": 1000,
"n": 20000}, the same cells bench_compare runs (kinds: spin, bytes, square, startup, slow_pow,
params, roundtrip, chunked; see bench/compare.cpp). Each cell runs as Python's own loop and through multiprocessing.Pool with
the fork, spawn and forkserver contexts, concurrent.futures.ProcessPoolExecutor (fork) and
joblib.Parallel (loky). Prints one JSON document on stdout: per (cell, peer) the seconds of each
repetition, or why the peer was skipped. With --progress-fd, writes "done total" lines to that
descriptor after every run (compare.py draws them with the library's progress bar).

How the work matches the C++ side:
  - spin:NS items are burn (below) calibrated to NS of wall time on this machine, less the
    cost of a Python call (~0.15 us): below that, an item costs a call, whatever NS says.
  - bytes:SIZE returns SIZE bytes; square is x**2; startup is square through a pool made and
    ended in each run (`with Pool(2) as p: p.map(square, xs)`; not joblib, whose workers outlive
    its calls); slow_pow sleeps and goes through starmap on
    5 workers (Pool(5)); params is Pool.imap over parameter dicts, with each library's default
    chunksize, as a call without one does (Pool.imap: 1); roundtrip is x + 1, one
    call at a time (Pool.apply, executor.submit(f, x).result(), joblib with one item);
    chunked:C is x + 1 through map at chunksize C (Pool.map's chunksize, the executor's,
    joblib's batch_size).
  - 2 workers otherwise (all cores here). Pools are created once per worker count, warmed, and
    reused for every cell, as a program keeps its Pool; joblib's loky executor stays warm too.

Method: every repetition runs every peer once, in a random order; before them, an untimed run of
each peer on a tenth of the items (at least one per worker). A peer whose estimated time for one
run exceeds --budget (default 1.5 s) is skipped and says so: 1e7 items of 10 ns would take
Python's pools seconds to minutes each, not the 0.1 s of the C++ loop. Python's own loop, the
baseline, runs whenever one of the pools does.
"""

import argparse
import concurrent.futures
import functools
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time

# Per-item costs of each peer beyond the work, measured on the project's 2-vCPU machine
# (with the per-workload Python program this file replaced): used only to decide what to skip.
OVERHEAD_S = {  # batched map, seconds per item
    "py_sequential": 0.0, "py_pool_fork": 0.12e-6, "py_pool_spawn": 0.12e-6,
    "py_pool_forkserver": 0.12e-6, "py_process_pool_executor": 0.3e-6, "py_joblib": 3.3e-6}
OVERHEAD_CHUNK1_S = {  # imap with chunksize 1 (Pool.imap's default), seconds per item
    "py_sequential": 0.0, "py_pool_fork": 25e-6, "py_pool_spawn": 25e-6,
    "py_pool_forkserver": 25e-6, "py_process_pool_executor": 125e-6, "py_joblib": 3.3e-6}
OVERHEAD_APPLY_S = {  # one call at a time (roundtrip), seconds per call
    "py_sequential": 0.0, "py_pool_fork": 100e-6, "py_pool_spawn": 100e-6,
    "py_pool_forkserver": 100e-6, "py_process_pool_executor": 200e-6, "py_joblib": 3e-3}
RESULT_GB_PER_S = 0.4  # results through Pool's pipes, 1 MiB results


# --- the item functions (module level: every context can pickle them) ------------------------


def burn(x, loops):
    """A busy loop of `loops` iterations: the cost of a spin:NS item, calibrated."""
    acc = x
    for i in range(loops):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


def increment(x):
    return x + 1


def square(x):
    return x ** 2


def make_bytes(x, size):
    return bytes((x & 255,)) * size


def slow_pow(x, y, ms):
    time.sleep(ms / 1000)
    return pow(x, y)


def function_to_parallelize(params):
    return {"sum": params["param1"] + params["param2"]}


# --- the peers --------------------------------------------------------------------------------
# Pools are persistent: made and warmed once per worker count, outside the timing (but in the
# start-up cells, which time exactly that). "Automatic chunksize" is each library's own rule:
# Pool.map's and joblib's batch_size='auto'; ProcessPoolExecutor.map has none (its default is 1),
# so it is given Pool's rule.


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


PEERS = [Sequential, PoolFork, PoolSpawn, PoolForkserver, ProcessPoolExecutorFork, Joblib]


# --- cells ------------------------------------------------------------------------------------


class Cell:
    """One cell: its items, the function, the verb, the workers, and the Python cost of an item
    (for the skip estimate)."""

    def __init__(self, spec, loops_per_ns, floor_s):
        self.id, self.kind, self.param, self.n = spec["id"], spec["kind"], spec["param"], spec["n"]
        self.verb, self.workers, self.result_bytes = "map", os.cpu_count() or 1, 0
        self.chunksize = None  # each library's own
        n = self.n
        if self.kind == "spin":
            extra_ns = max(0.0, self.param - floor_s * 1e9)
            self.fn = functools.partial(burn, loops=round(extra_ns * loops_per_ns))
            self.items = list(range(n))
            self.item_s = max(self.param / 1e9, floor_s)
        elif self.kind == "bytes":
            self.fn = functools.partial(make_bytes, size=self.param)
            self.items = list(range(n))
            self.item_s = floor_s + self.param / 2e9
            self.result_bytes = self.param
        elif self.kind == "square":
            self.fn, self.items, self.item_s = square, list(range(n)), floor_s
        elif self.kind == "slow_pow":
            self.fn = functools.partial(slow_pow, ms=self.param)
            self.items = [(x, 2) for x in range(n)]
            self.verb, self.workers, self.item_s = "starmap", 5, self.param / 1000
        elif self.kind == "chunked":
            self.fn, self.items, self.item_s = increment, list(range(n)), floor_s
            self.chunksize = self.param
        elif self.kind == "roundtrip":
            self.fn, self.items, self.item_s = increment, list(range(n)), floor_s
            self.verb = "apply"
        elif self.kind == "startup":  # square through a pool made and ended in the run
            self.fn, self.items, self.item_s = square, list(range(n)), floor_s
            self.verb = "fresh"
        elif self.kind == "params":
            self.fn = function_to_parallelize
            self.items = [{"param1": x, "param2": 15} for x in range(n)]
            self.verb, self.item_s = "imap", 4 * floor_s
        else:
            raise SystemExit(f"compare_peers.py: unknown cell kind {self.kind!r}")
        self.warm = self.items[:max(self.workers, n // 10)]

    def estimate_s(self, peer):
        """Seconds one run of `peer` should take here: the work (shared by the workers), the
        peer's own cost per item, and the results' trip through a pipe."""
        work = self.n * self.item_s
        if peer == "py_sequential":
            return work
        if self.verb == "fresh":  # a pool's start and end: ~0.04 s (fork), ~0.09 s (spawn)
            return 0.15 + work / self.workers + self.n * OVERHEAD_S[peer]
        per_item = {"imap": OVERHEAD_CHUNK1_S, "apply": OVERHEAD_APPLY_S}.get(
            self.verb, OVERHEAD_CHUNK1_S if self.chunksize == 1 else OVERHEAD_S)[peer]
        return (work / self.workers + self.n * per_item +
                self.n * self.result_bytes / (RESULT_GB_PER_S * 1e9))


def run(peer, cell, items):
    """One call of the cell's verb through `peer` (an instance of a peer class)."""
    fn = cell.fn
    if cell.verb == "apply":  # one call at a time, each waiting for its result
        if isinstance(peer, Sequential):
            return [fn(x) for x in items]
        if isinstance(peer, PoolFork):
            return [peer.pool.apply(fn, (x,)) for x in items]
        if isinstance(peer, ProcessPoolExecutorFork):
            return [peer.executor.submit(fn, x).result() for x in items]
        parallel = peer.joblib.Parallel(n_jobs=peer.workers)
        return [parallel([peer.joblib.delayed(fn)(x)])[0] for x in items]
    if cell.verb == "fresh" and not isinstance(peer, Sequential):
        # A pool of the peer's kind made for this call and ended after it, as
        # `with Pool(2) as p: p.map(f, xs)` does (start-up included).
        fresh = type(peer)(peer.workers)
        try:
            return fresh.map(fn, items, cell.chunksize)
        finally:
            fresh.close()
    if isinstance(peer, Sequential):
        if cell.verb == "starmap":
            return [fn(*t) for t in items]
        return [fn(x) for x in items]
    if isinstance(peer, PoolFork):  # and its spawn and forkserver subclasses
        if cell.verb == "starmap":
            return peer.pool.starmap(fn, items)
        if cell.verb == "imap":
            return list(peer.pool.imap(fn, iter(items)))
        return peer.pool.map(fn, items, cell.chunksize)
    if isinstance(peer, ProcessPoolExecutorFork):
        if cell.verb == "starmap":
            return list(peer.executor.map(fn, *zip(*items)))
        if cell.verb == "imap":
            return list(peer.executor.map(fn, iter(items)))
        chunksize = cell.chunksize or pool_rule(len(items), peer.workers)
        return list(peer.executor.map(fn, items, chunksize=chunksize))
    joblib = peer.joblib
    parallel = joblib.Parallel(n_jobs=peer.workers)
    if cell.verb == "starmap":
        return parallel(joblib.delayed(fn)(*t) for t in items)
    if cell.chunksize:
        parallel = joblib.Parallel(n_jobs=peer.workers, batch_size=cell.chunksize)
    return parallel(joblib.delayed(fn)(x) for x in items)


class Progress:
    """'done total' lines on a descriptor, for compare.py's progress bar."""

    def __init__(self, fd, total):
        self.out = os.fdopen(fd, "w", buffering=1) if fd is not None else None
        self.done, self.total = 0, total
        self.step(0)

    def step(self, runs=1):
        self.done += runs
        if self.out:
            try:
                self.out.write(f"{self.done} {self.total}\n")
            except BrokenPipeError:
                self.out = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", required=True, help="JSON file: the cells to run")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.5,
                        help="skip a peer whose run would take longer than this (seconds)")
    parser.add_argument("--progress-fd", type=int, help="write 'done total' lines here")
    args = parser.parse_args()
    try:
        import joblib
    except ImportError:
        sys.exit("compare_peers.py: joblib is missing: apt-get install python3-joblib "
                 "(and run this with /usr/bin/python3)")

    with open(args.cells) as f:
        specs = json.load(f)
    floor_s, loops_per_ns = calibrate()
    cells = [Cell(spec, loops_per_ns, floor_s) for spec in specs]

    plan, records = [], []
    for cell in cells:
        wanted = []
        for cls in PEERS[1:]:
            if cell.verb == "fresh" and cls is Joblib:
                records.append({"cell": cell.id, "peer": cls.name, "skipped":
                                "joblib keeps its workers between calls (loky's reusable "
                                "executor): no call of it starts them"})
                continue
            estimate = cell.estimate_s(cls.name)
            if estimate > args.budget:
                records.append({"cell": cell.id, "peer": cls.name, "skipped":
                                f"estimated {estimate:.2g} s a run, over the {args.budget:g} s "
                                f"budget ({cell.n} items)"})
            else:
                wanted.append(cls)
        # Python's loop is the baseline of the others: it runs whenever one of them does.
        if wanted:
            wanted.insert(0, Sequential)
        else:
            records.append({"cell": cell.id, "peer": Sequential.name,
                            "skipped": "no Python pool fits the budget"})
        plan.append((cell, wanted))
    progress = Progress(args.progress_fd, sum(len(w) for _, w in plan) * args.repetitions)

    pools = {}  # (class, workers) -> instance, kept for every cell
    started = time.monotonic()
    try:
        for cell, wanted in plan:
            instances = []
            for cls in wanted:
                key = (cls, cell.workers)
                if key not in pools:
                    pools[key] = cls(cell.workers)
                    pools[key].workers = cell.workers
                instances.append(pools[key])
            times = {p.name: [] for p in instances}
            expected = [cell.fn(*x) if cell.verb == "starmap" else cell.fn(x)
                        for x in cell.items[:2]]
            for p in instances:
                run(p, cell, cell.warm)
            for _ in range(args.repetitions):
                random.shuffle(instances)
                for p in instances:
                    start = time.perf_counter()
                    out = run(p, cell, cell.items)
                    seconds = time.perf_counter() - start
                    if len(out) != cell.n or list(out[:2]) != expected:
                        raise RuntimeError(f"{p.name} returned wrong results for {cell.id}")
                    del out
                    times[p.name].append(seconds)
                    progress.step()
            for name, seconds in times.items():
                records.append({"cell": cell.id, "peer": name, "seconds": seconds,
                                "median": statistics.median(seconds), "min": min(seconds),
                                "max": max(seconds), "workers": cell.workers})
    finally:
        for p in pools.values():
            p.close()
    print(f"compare_peers: done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    json.dump({"python": platform.python_version(), "executable": sys.executable,
               "joblib": joblib.__version__, "repetitions": args.repetitions,
               "budget_s": args.budget, "burn_loops_per_ns": loops_per_ns,
               "call_floor_ns": floor_s * 1e9, "records": records}, sys.stdout, indent=1)
    print()


def calibrate():
    """(seconds a call of burn with no loop takes, loops per ns beyond that), each from the
    fastest of several short timings: on a busy machine a median counts other processes' turns.
    An item of NS ns is then burn with (NS - call) * loops_per_ns loops."""
    def per_item(loops, n):
        fn = functools.partial(burn, loops=loops)
        fastest = float("inf")
        for _ in range(9):
            start = time.perf_counter()
            for x in range(n):
                fn(x)
            fastest = min(fastest, time.perf_counter() - start)
        return fastest / n
    call_s = per_item(0, 20000)
    loop_s = (per_item(2000, 100) - call_s) / 2000
    return call_s, 1e-9 / loop_s


if __name__ == "__main__":
    main()
