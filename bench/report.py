#!/usr/bin/python3
"""Run the benchmarks of a build and report them against the sequential loop and the peers.

    python3 bench/report.py --build <builddir> [--quick] [--filter REGEX] [--repetitions N]
                            [--no-python]

Runs every <builddir>/bench/bench_* executable (Google Benchmark) with repetitions interleaved
at random, prints one table per workload (median, min-max, speedup over the sequential loop of
the same run, ratio to the best peer), then which of the targets are met, and writes the
raw results to <builddir>/bench/results.json and the tables to <builddir>/bench/results.md.

The process workloads (bench_process_map) get a section of their own: the same
workloads run by bench/peers/process_peers.py through Python's multiprocessing.Pool,
ProcessPoolExecutor and joblib (with Debian's /usr/bin/python3, when it has joblib), side by
side with the library, then their targets. --filter selects those Python runs too, by the
names process_<workload>/py_<peer>; --no-python leaves them out.

--quick: 3 repetitions of >= 0.1 s each (~40 s on 2 cores, and ~40 s more for the Python
peers); default: 5 of >= 0.5 s (~3-4 min, and ~1.5 min for the Python peers).
Exit status: 0 when every benchmark ran (targets missed or not), 1 when one failed or timed out.
Python 3 standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Workloads in this order; executables not listed here run after them.
WORKLOADS = ["tiny", "small", "balanced", "cpu", "irregular", "nested", "fib", "submit", "idle",
             "progress"]
BASELINE = "sequential"
LIBRARY_VARIANTS = ("parallel_map", "pool_submit", "thread_pool", "sequential_policy")
PEER_PREFIXES = ("omp_", "tbb", "std_par")
COUNTERS = ("ns_per_call", "ns_per_task", "cpu_s",  # shown next to the time when present
            "us_per_task", "us_per_item", "GB_per_s")

TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# --- running ----------------------------------------------------------------------------------


# Programs that are not a workload of this report: bench_compare is run by bench/compare.py
# (./scripts/bench), with a grid of its own.
NOT_WORKLOADS = {"bench_compare"}


def executables(build):
    directory = build / "bench"
    found = [p for p in directory.glob("bench_*")
             if p.is_file() and os.access(p, os.X_OK) and p.name not in NOT_WORKLOADS]
    order = {name: i for i, name in enumerate(WORKLOADS)}
    return sorted(found, key=lambda p: (order.get(p.name[len("bench_"):], len(order)), p.name))


def selected_benchmarks(exe, pattern):
    """The benchmark names of exe that match pattern (Google Benchmark's own regex matching)."""
    out = subprocess.run([str(exe), "--benchmark_list_tests=true", f"--benchmark_filter={pattern}"],
                         capture_output=True, text=True, timeout=60)
    return [line for line in out.stdout.splitlines() if line.strip()]


def run(exe, args, timeout):
    """Runs one executable; returns (parsed JSON or None, error text or None, seconds)."""
    command = [str(exe), "--benchmark_format=json", f"--benchmark_repetitions={args.repetitions}",
               f"--benchmark_min_time={args.min_time}",
               "--benchmark_enable_random_interleaving=true"]
    if args.filter:
        command.append(f"--benchmark_filter={args.filter}")
    start = time.monotonic()
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s (a deadlock?)", time.monotonic() - start
    seconds = time.monotonic() - start
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-5:])
        return None, f"exited with status {out.returncode}: {tail}", seconds
    try:
        return json.loads(out.stdout), None, seconds
    except json.JSONDecodeError as e:
        return None, f"printed no valid JSON ({e})", seconds


# --- summarising ------------------------------------------------------------------------------


class Result:
    """The repetitions of one workload/variant."""

    def __init__(self, workload, variant):
        self.workload, self.variant = workload, variant
        self.times_ns = []
        self.counters = {}
        self.error = None

    def add(self, entry):
        if entry.get("error_occurred"):
            self.error = entry.get("error_message", "error")
            return
        self.times_ns.append(entry["real_time"] * TO_NS[entry.get("time_unit", "ns")])
        for name in COUNTERS:
            if name in entry:
                self.counters.setdefault(name, []).append(entry[name])

    @property
    def ok(self):
        return self.error is None and bool(self.times_ns)

    @property
    def median(self):
        return statistics.median(self.times_ns)

    def counter(self, name, how=statistics.median):
        values = self.counters.get(name)
        return how(values) if values else None

    @property
    def is_peer(self):
        return self.variant.startswith(PEER_PREFIXES)


def collect(outputs):
    """{workload: {variant: Result}} from the JSON of every executable, in registration order."""
    results = {}
    for output in outputs:
        # Repetitions ran interleaved at random; family_index restores the registration order.
        entries = sorted(output.get("benchmarks", []), key=lambda e: e.get("family_index", 0))
        for entry in entries:
            if entry.get("run_type", "iteration") != "iteration":
                continue  # aggregates (mean, median, stddev): recomputed here from the runs
            parts = entry.get("run_name", entry["name"]).split("/")
            workload, variant = parts[0], parts[1] if len(parts) > 1 else parts[0]
            by_variant = results.setdefault(workload, {})
            by_variant.setdefault(variant, Result(workload, variant)).add(entry)
    return results


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_counter(name, value):
    return f"{value:.3g} {name.replace('_per_', '/')}"


def idle_table(by_variant):
    """The idle workload: its measure is the CPU time counter, not the (fixed) time."""
    header = ["variant", "cpu s while idle (median)", "min - max", "idle period"]
    rows = []
    for r in by_variant.values():
        if not r.ok or "cpu_s" not in r.counters:
            rows.append([r.variant, "error", r.error or "no cpu_s counter", ""])
            continue
        values = r.counters["cpu_s"]
        rows.append([r.variant, f"{statistics.median(values):.6f}",
                     f"{min(values):.6f} - {max(values):.6f}", fmt_time(r.median)])
    return header, rows


def table(by_variant):
    """Header and rows (lists of strings) of one workload's table."""
    if any("cpu_s" in r.counters for r in by_variant.values()):
        return idle_table(by_variant)
    baseline = by_variant.get(BASELINE)
    baseline_ns = baseline.median if baseline and baseline.ok else None
    peers = [r.median for r in by_variant.values() if r.is_peer and r.ok]
    best_peer_ns = min(peers) if peers else None
    header = ["variant", "median", "min - max", "speedup vs sequential", "vs best peer", "metric"]
    rows = []
    for r in by_variant.values():
        if not r.ok:
            rows.append([r.variant, "error", r.error or "no runs", "", "", ""])
            continue
        speedup = f"{baseline_ns / r.median:.2f}x" if baseline_ns else "-"
        vs_peer = f"{r.median / best_peer_ns:.2f}x" if best_peer_ns else "-"
        metric = "; ".join(fmt_counter(name, r.counter(name)) for name in r.counters)
        rows.append([r.variant, fmt_time(r.median),
                     f"{fmt_time(min(r.times_ns))} - {fmt_time(max(r.times_ns))}", speedup,
                     vs_peer, metric])
    return header, rows


def drop_empty_columns(header, rows):
    keep = [i for i in range(len(header)) if any(str(r[i]) for r in rows)]
    return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]


def render_text(header, rows):
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_markdown(header, rows):
    escape = lambda c: str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(escape(c) for c in r) + " |" for r in rows])


# --- the thread backend's targets -------------------------------------------------------------


def targets(results):
    """[(target, status, detail)] with status "met", "MISSED" or "n/a" (not measured)."""
    def get(workload, variant):
        r = results.get(workload, {}).get(variant)
        return r if r is not None and r.ok else None

    checks = []

    def check(name, needed, condition, detail):
        if any(x is None for x in needed):
            checks.append((name, "n/a", "not measured in this run"))
        else:
            checks.append((name, "met" if condition() else "MISSED", detail()))

    def ratio(a, b):
        return a.median / b.median

    pm, seq = get("tiny", "parallel_map"), get("tiny", BASELINE)
    check("tiny: parallel_map <= 1.05x the sequential loop", [pm, seq],
          lambda: ratio(pm, seq) <= 1.05, lambda: f"{ratio(pm, seq):.2f}x")
    for peer in ("tbb", "omp_static"):
        p = get("tiny", peer)
        check(f"tiny: parallel_map no slower than {peer}", [pm, p], lambda: ratio(pm, p) <= 1.0,
              lambda: f"{ratio(pm, p):.2f}x {peer}")

    for workload in ("balanced", "cpu"):
        pm, seq, tbb = (get(workload, v) for v in ("parallel_map", BASELINE, "tbb"))
        check(f"{workload}: parallel_map speedup >= 1.9x", [pm, seq],
              lambda: ratio(seq, pm) >= 1.9, lambda: f"{ratio(seq, pm):.2f}x")
        check(f"{workload}: parallel_map within 1.1x of tbb", [pm, tbb],
              lambda: ratio(pm, tbb) <= 1.1, lambda: f"{ratio(pm, tbb):.2f}x tbb")

    pm = get("small", "parallel_map")
    check("small: parallel_map median <= 1 us", [pm], lambda: pm.median <= 1000,
          lambda: fmt_time(pm.median))

    pm = get("irregular", "parallel_map")
    for peer in ("omp_dynamic", "tbb"):
        p = get("irregular", peer)
        check(f"irregular: parallel_map at least as fast as {peer}", [pm, p],
              lambda: ratio(pm, p) <= 1.0, lambda: f"{ratio(pm, p):.2f}x {peer}")

    r = get("submit", "pool_submit")
    check("submit: <= 300 ns per task", [r], lambda: r.counter("ns_per_task") <= 300,
          lambda: f"{r.counter('ns_per_task'):.3g} ns/task")
    r = get("fib", "pool_submit")
    check("fib: <= 10 ns per call", [r], lambda: r.counter("ns_per_call") <= 10,
          lambda: f"{r.counter('ns_per_call'):.3g} ns/call")

    pm = get("progress", "parallel_map")
    for variant in ("parallel_map_callback", "parallel_map_progress_bar"):
        p = get("progress", variant)
        check(f"progress: {variant} costs < 1% on 1 ms items", [pm, p],
              lambda: ratio(p, pm) < 1.01, lambda: f"{(ratio(p, pm) - 1) * 100:+.2f}%")

    # 0 CPU s, every repetition. Below 100 us a second is counted as 0: that much is a pool's
    # workers spinning briefly before they block, not a pool that keeps polling.
    r = get("idle", "thread_pool")
    check("idle: a thread_pool burns 0 CPU s while idle (< 0.0001 s)", [r],
          lambda: r.counter("cpu_s", max) < 1e-4,
          lambda: f"max {r.counter('cpu_s', max):.6f} cpu s in 1 s")
    return checks


# --- the process backend next to Python's pools -----------------------------------------------

PYTHON = "/usr/bin/python3"  # Debian's: it has python3-joblib; the python3 on PATH may not
PEERS_SCRIPT = Path(__file__).resolve().parent / "peers" / "process_peers.py"
PROCESS_PREFIX = "process_"  # bench_process_map's workloads are process_<name>/<variant>
PYTHON_PEERS = ("py_pool_fork", "py_process_pool_executor", "py_joblib", "py_pool_spawn",
                "py_pool_forkserver")

# (name, what runs on 2 workers unless said, unit, the C++ counter holding the value; None: the
# time)
PROCESS_WORKLOADS = [
    ("noop_chunk1", "20000 no-op tasks, chunksize 1", "us/task", "us_per_task"),
    ("noop_batched", "1e6 no-op items, auto chunksize", "us/item", "us_per_item"),
    ("cpu_1ms", "200 items of ~1 ms CPU", "speedup", None),
    ("sleep_10ms", "100 x 10 ms sleep, 4 workers", "ms", None),
    ("results_1mib", "200 results of 1 MiB", "GB/s", "GB_per_s"),
    ("startup", "start 2 + 1 task + shut down", "ms", None),
    ("roundtrip", "1000 tasks one at a time", "us/task", "us_per_task"),
]
# The start methods side by side, for the workloads that run with each of them.
START_WORKLOADS = ("startup", "roundtrip")
START_COLUMNS = [
    ("process_pool<fork>", "process_pool_fork"), ("process_pool<spawn>", "process_pool_spawn"),
    ("process_pool<forkserver>", "process_pool_forkserver"),
    ("processes<spawn> per call", "processes_spawn"),
    ("processes<forkserver> per call", "processes_forkserver"),
    ("Pool(fork)", "py_pool_fork"), ("Pool(spawn)", "py_pool_spawn"),
    ("Pool(forkserver)", "py_pool_forkserver"),
]
# (column, its key: a variant of bench_process_map or a peer of process_peers.py)
PROCESS_COLUMNS = [
    ("sequential", BASELINE), ("processes<fork> per call", "processes_fork"),
    ("process_pool<fork>", "process_pool_fork"), ("Pool(fork)", "py_pool_fork"),
    ("ProcessPoolExecutor", "py_process_pool_executor"), ("joblib", "py_joblib"),
]


def python_peers_wanted(pattern):
    """The workloads of process_peers.py that --filter selects (all of them without one)."""
    names = [w for w, *_ in PROCESS_WORKLOADS]
    if not pattern:
        return names
    return [w for w in names
            if any(re.search(pattern, f"{PROCESS_PREFIX}{w}/{p}") for p in PYTHON_PEERS)]


def python_peers_missing():
    """Why the Python peers cannot run here, or None."""
    if not os.access(PYTHON, os.X_OK):
        return f"skipped: {PYTHON} not found (install python3, python3-joblib)"
    probe = subprocess.run([PYTHON, "-c", "import joblib, concurrent.futures, multiprocessing"],
                           capture_output=True, text=True)
    return "skipped: install python3-joblib" if probe.returncode else None


def run_python_peers(args):
    """Runs process_peers.py; returns ({(peer, workload): record}, raw JSON, note or error)."""
    wanted = python_peers_wanted(args.filter)
    if not wanted:
        return {}, None, None  # the filter names no process workload: say nothing
    if args.no_python:
        return {}, None, "skipped (--no-python)"
    missing = python_peers_missing()
    if missing:
        return {}, None, missing
    command = [PYTHON, str(PEERS_SCRIPT), "--repetitions", str(args.repetitions),
               "--only", "^(" + "|".join(wanted) + ")$"]
    if args.quick:
        command.append("--quick")
    if args.filter:
        peers = [p for p in PYTHON_PEERS
                 if any(re.search(args.filter, f"{PROCESS_PREFIX}{w}/{p}") for w in wanted)]
        command += ["--peers", "^(" + "|".join(peers) + ")$"]
    print("running process_peers.py (Python peers) ...", end=" ", flush=True)
    start = time.monotonic()
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print("FAILED", flush=True)
        return {}, None, f"FAILED: timed out after {args.timeout:.0f} s"
    print(f"{time.monotonic() - start:.1f} s", flush=True)
    try:
        if out.returncode:
            raise ValueError(f"exited with status {out.returncode}")
        document = json.loads(out.stdout)
    except (ValueError, json.JSONDecodeError) as e:
        tail = "\n".join(out.stderr.strip().splitlines()[-5:])
        return {}, None, f"FAILED: {e}: {tail}"
    records = {(r["peer"], r["workload"]): r for r in document["records"]}
    return records, document, None


class Figure:
    """One cell of the processes table: a value in the workload's unit, its range, a note."""

    def __init__(self, value, low=None, high=None, ms=None):
        self.value, self.low, self.high, self.ms = value, low, high, ms


def cpp_figure(results, workload, unit, counter, variant):
    by_variant = results.get(PROCESS_PREFIX + workload, {})
    r = by_variant.get(variant)
    if r is None or not r.ok:
        return None if r is None else "error"
    if unit == "speedup":
        seq = by_variant.get(BASELINE)
        if seq is None or not seq.ok:
            return None
        return Figure(seq.median / r.median, ms=r.median / 1e6)
    values = r.counters.get(counter) if counter else [t / 1e6 for t in r.times_ns]
    if not values:
        return None
    return Figure(statistics.median(values), min(values), max(values))


def python_figure(records, workload, unit, peer):
    record = records.get((peer, workload))
    if record is None:
        return None
    if unit == "speedup":
        return Figure(record["speedup"], ms=record["median"]) if "speedup" in record else None
    return Figure(record["median"], record["min"], record["max"])


def process_figure(results, records, workload, unit, counter, key):
    if key.startswith("py_"):
        return python_figure(records, workload, unit, key)
    return cpp_figure(results, workload, unit, counter, key)


def fmt_figure(figure, unit):
    if figure is None:
        return "-"
    if isinstance(figure, str):
        return figure
    if unit == "speedup":
        return f"{figure.value:.2f}x ({figure.ms:.3g} ms)"
    if figure.low is None:
        return f"{figure.value:.3g}"
    return f"{figure.value:.3g} ({figure.low:.3g}-{figure.high:.3g})"


def process_table(results, records):
    """Header and rows of the side-by-side table; None when nothing of it was measured."""
    header = ["workload", "unit"] + [label for label, _ in PROCESS_COLUMNS]
    rows = []
    for workload, what, unit, counter in PROCESS_WORKLOADS:
        cells = [process_figure(results, records, workload, unit, counter, key)
                 for _, key in PROCESS_COLUMNS]
        if all(c is None for c in cells):
            continue
        text = [fmt_figure(c, unit) for c in cells]
        if workload == "sleep_10ms":
            text[0] = "1000 (not run)"
        rows.append([what, "speedup (ms)" if unit == "speedup" else unit] + text)
    return (header, rows) if rows else None


def start_method_table(results, records):
    """Header and rows of the start-method table; None when nothing was measured."""
    units = {w: (unit, counter) for w, _, unit, counter in PROCESS_WORKLOADS}
    header = ["workload", "unit"] + [label for label, _ in START_COLUMNS]
    rows = []
    for workload, what, unit, counter in PROCESS_WORKLOADS:
        if workload not in START_WORKLOADS:
            continue
        cells = [process_figure(results, records, workload, *units[workload], key)
                 for _, key in START_COLUMNS]
        if all(c is None for c in cells):
            continue
        rows.append([what, unit] + [fmt_figure(c, unit) for c in cells])
    return (header, rows) if rows else None


def process_checker(results, records):
    """(checks, check, fig): the list the targets go in, check(name, figures needed, condition,
    detail) adding one, and fig(workload, column key) the figure of a cell."""
    checks = []

    def check(name, needed, condition, detail):
        if any(x is None or isinstance(x, str) for x in needed):
            checks.append((name, "n/a", "not measured in this run"))
        else:
            checks.append((name, "met" if condition() else "MISSED", detail()))

    units = {w: (unit, counter) for w, _, unit, counter in PROCESS_WORKLOADS}
    fig = lambda workload, key: process_figure(results, records, workload, *units[workload], key)
    return checks, check, fig


def start_method_targets(results, records):
    """The start methods' benchmark targets."""
    checks, check, fig = process_checker(results, records)
    spawn, py_spawn = fig("startup", "process_pool_spawn"), fig("startup", "py_pool_spawn")
    check("startup: process_pool<spawn> of 2 workers + one task + shutdown <= 20 ms", [spawn],
          lambda: spawn.value <= 20, lambda: f"{spawn.value:.3g} ms")
    check("startup: process_pool<spawn> >= 5x faster than Python's Pool(spawn)",
          [spawn, py_spawn], lambda: py_spawn.value >= 5 * spawn.value,
          lambda: f"{py_spawn.value / spawn.value:.1f}x ({spawn.value:.3g} vs "
                  f"{py_spawn.value:.3g} ms)")
    server = fig("startup", "process_pool_forkserver")
    check("startup: process_pool<forkserver> <= 3 ms once the server runs", [server],
          lambda: server.value <= 3, lambda: f"{server.value:.3g} ms")
    fork = fig("roundtrip", "process_pool_fork")
    for variant in ("process_pool_spawn", "process_pool_forkserver"):
        f = fig("roundtrip", variant)
        check(f"roundtrip: {variant} the same as process_pool<fork> (within 25%)", [f, fork],
              lambda: f.value <= 1.25 * fork.value,
              lambda: f"{f.value:.3g} vs {fork.value:.3g} us/task")
    return checks


def process_targets(results, records):
    """The process backend's targets, as targets() does the thread backend's."""
    checks, check, fig = process_checker(results, records)
    pool = fig("results_1mib", "py_pool_fork")
    for variant in ("process_pool_fork", "processes_fork"):
        f = fig("noop_chunk1", variant)
        check(f"noop_chunk1: {variant} round trip <= 5 us per task at chunksize 1", [f],
              lambda: f.value <= 5, lambda: f"{f.value:.3g} us/task")
        f = fig("noop_batched", variant)
        check(f"noop_batched: {variant} <= 0.3 us per item", [f], lambda: f.value <= 0.3,
              lambda: f"{f.value:.3g} us/item")
        f = fig("cpu_1ms", variant)
        check(f"cpu_1ms: {variant} >= 1.9x the sequential loop", [f], lambda: f.value >= 1.9,
              lambda: f"{f.value:.2f}x")
        f = fig("results_1mib", variant)
        check(f"results_1mib: {variant} >= 10x the throughput of Python's Pool(fork)", [f, pool],
              lambda: f.value >= 10 * pool.value,
              lambda: f"{f.value:.3g} GB/s = {f.value / pool.value:.1f}x Pool's {pool.value:.3g}")
        f = fig("startup", variant)
        check(f"startup: {variant} of 2 workers + one task + shutdown <= 2 ms", [f],
              lambda: f.value <= 2, lambda: f"{f.value:.3g} ms")
    return checks


def report_processes(results, records, note, markdown):
    """Prints the processes section and appends it to markdown; returns its checks."""
    table_ = process_table(results, records)
    if table_ is None and note is None:
        return []
    print("\n== processes: the library next to Python's pools ==")
    markdown += ["## Processes", ""]
    explanation = [
        "Medians (min-max over the repetitions), 2 workers unless said; sequential, "
        "processes<fork> (workers forked at each call) and process_pool<fork> from "
        "bench_process_map; the Python columns from bench/peers/process_peers.py (persistent, "
        "warmed pools). Speedups are over each language's own sequential loop in the same run; "
        "the 10 ms sleeps ideally take 250 ms."]
    if not any(w.startswith(PROCESS_PREFIX) for w in results):
        explanation.append("bench_process_map: not built or not selected in this run.")
    if note:
        explanation.append(f"Python peers: {note}")
    for workload, by_variant in results.items():
        if workload.startswith(PROCESS_PREFIX):
            explanation += [f"error: {workload}/{r.variant}: {r.error}"
                            for r in by_variant.values() if r.error]
    # Markdown would take <fork> for an HTML tag: such names go in backticks there.
    code = lambda text: re.sub(r"(\w+<\w+>)", r"`\1`", text)
    if table_ is not None:
        header, rows = table_
        print(render_text(header, rows))
        markdown += [render_markdown([code(h) for h in header], rows), ""]
    for line in explanation:
        print(line)
    markdown += [*(code(line) for line in explanation), ""]

    starts = start_method_table(results, records)
    if starts is not None:
        print("\n== start methods: fork, spawn, forkserver ==")
        markdown += ["## Start methods", ""]
        header, rows = starts
        print(render_text(header, rows))
        markdown += [render_markdown([code(h) for h in header], rows), ""]
        line = ("The forkserver figures are with its server already running (the warm-up "
                "started it); Python's forkserver likewise keeps its server between pools.")
        print(line)
        markdown += [line, ""]

    checks = []
    for title, found in (("process backend", process_targets(results, records)),
                         ("start method", start_method_targets(results, records))):
        checks += found
        if all(status == "n/a" for _, status, _ in found):
            continue
        report_targets(title, found, markdown)
    return checks


def report_targets(title, checks, markdown):
    """Prints a group of target checks and appends them to markdown as a table."""
    print(f"\n== {title} targets ==")
    markdown += [f"## {title[0].upper()}{title[1:]} targets", "", "| target | status | measured |",
                 "|---|---|---|"]
    for name, status, detail in checks:
        print(f"  [{status:>6}] {name}: {detail}")
        markdown.append(f"| {name} | {status} | {detail} |")
    met = sum(1 for _, status, _ in checks if status == "met")
    measured = sum(1 for _, status, _ in checks if status != "n/a")
    print(f"  {met} of {measured} measured targets met")
    markdown.append("")


# --- main -------------------------------------------------------------------------------------


def machine():
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cores": os.cpu_count(), "usable_cores": usable, "cpu": model or platform.processor(),
            "system": f"{platform.system()} {platform.release()}", "host": platform.node()}


def loadavg():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", required=True, type=Path, help="the CMake build directory")
    parser.add_argument("--quick", action="store_true", help="3 short repetitions (~40 s)")
    parser.add_argument("--filter", help="regex on benchmark names, e.g. 'tiny|small/parallel'")
    parser.add_argument("--repetitions", type=int, help="repetitions (default 3 quick, 5 full)")
    parser.add_argument("--min-time", type=float, help="seconds per repetition (0.1 / 0.5)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per executable")
    parser.add_argument("--no-python", action="store_true",
                        help="leave out the Python peers of the process workloads")
    args = parser.parse_args()
    args.repetitions = args.repetitions or (3 if args.quick else 5)
    args.min_time = args.min_time or (0.1 if args.quick else 0.5)

    exes = executables(args.build)
    if not exes:
        sys.exit(f"report.py: no bench_* executables in {args.build / 'bench'}; build with "
                 "-DPARALLEL_BUILD_BENCHMARKS=ON -DCMAKE_BUILD_TYPE=Release first")

    info = machine()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    heading = [
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"{info['system']}",
        f"load average before: {loadavg()}",
        f"started {started}; {args.repetitions} repetitions of >= {args.min_time} s each, "
        "interleaved at random; times are wall-clock medians",
    ]
    print("\n".join(heading), flush=True)

    outputs, failures = [], []
    for exe in exes:
        if args.filter and not selected_benchmarks(exe, args.filter):
            continue
        print(f"running {exe.name} ...", end=" ", flush=True)
        output, error, seconds = run(exe, args, args.timeout)
        print(f"{seconds:.1f} s" + (f"  FAILED: {error}" if error else ""), flush=True)
        if error:
            failures.append((exe.name, error))
        else:
            outputs.append(output)
    records, peers_document, peers_note = run_python_peers(args)
    if peers_note and peers_note.startswith("FAILED"):
        failures.append(("process_peers.py", peers_note))
    heading.append(f"load average after: {loadavg()}")
    print(heading[-1])

    results = collect(outputs)
    ordered = sorted(results, key=lambda w: WORKLOADS.index(w) if w in WORKLOADS else len(WORKLOADS))
    markdown = ["# Benchmark results", "", *[f"- {line}" for line in heading], ""]
    for workload in ordered:
        if workload.startswith(PROCESS_PREFIX):
            continue  # in the processes section, next to the Python peers
        header, rows = drop_empty_columns(*table(results[workload]))
        print(f"\n== {workload} ==\n{render_text(header, rows)}")
        markdown += [f"## {workload}", "", render_markdown(header, rows), ""]

    checks = targets(results)
    report_targets("thread backend", checks, markdown)
    report_processes(results, records, peers_note, markdown)
    for name, error in failures:
        print(f"FAILED: {name}: {error}")
        markdown.append(f"\nFAILED: {name}: {error}")

    out_dir = args.build / "bench"
    (out_dir / "results.json").write_text(json.dumps(
        {"machine": info, "heading": heading, "repetitions": args.repetitions,
         "min_time": args.min_time, "runs": outputs,
         "python_peers": peers_document, "python_peers_note": peers_note,
         "failures": [{"executable": n, "error": e} for n, e in failures]}, indent=1))
    (out_dir / "results.md").write_text("\n".join(markdown) + "\n")
    print(f"\nwrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
