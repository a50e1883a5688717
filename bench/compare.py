#!/usr/bin/python3
"""The sequential loop against every pooled backend and the peers: ./scripts/bench.

    /usr/bin/python3 bench/compare.py [--quick] [--build DIR] [--out DIR] [--only REGEX]
                                      [--repetitions N] [--min-time S] [--budget S] [--no-python]
    /usr/bin/python3 bench/compare.py --render bench/results/compare.json [--out DIR]

Runs one grid of workloads through build/bench/bench/bench_compare (C++: the sequential loop,
parallel::threads, process_pool<fork|spawn|forkserver> reused, processes<...> per call, OpenMP,
oneTBB, std::execution::par; Google Benchmark) and bench/peers/compare_peers.py (Debian's
/usr/bin/python3: its own loop, multiprocessing.Pool with fork, spawn and forkserver,
ProcessPoolExecutor, joblib). The library's progress bar runs on stderr meanwhile. Then prints
one table per family of the grid (median speedup over the sequential loop of the same run, with
min-max), a break-even summary, and writes to --out (default bench/results/, --quick:
bench/results/quick/):

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
          time, 2000 [500] of them (Pool.apply, executor.submit(...).result() for Python), and
          a 50-item map of 64 B results
  never_slower  1 .. 1e7 items of 1 ns .. 10 us each, the cells of at most ~100 ms [20 ms]
          of sequential work, through the sequential loop, parallel::threads and the C++ peers
          only: threads' speedup per cell, and the worst cell of each
Full: 5 repetitions of >= 0.2 s, about 13-16 min on 2 cores; --quick: 3 of >= 0.01 s, about
110 s. Python peers whose run would exceed --budget (1.5 s; quick 0.3 s) are skipped and
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
import statistics
import subprocess
import sys
import time
from pathlib import Path

import report  # bench/report.py: the machine reading shared by both drivers

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"  # Debian's, with python3-joblib; the python3 on PATH may lack it
PEERS_SCRIPT = HERE / "peers" / "compare_peers.py"

CPP_VARIANTS = [  # (key, label); the first is every C++ variant's baseline
    ("sequential", "sequential loop"), ("threads", "parallel::threads"),
    ("pool_fork", "process_pool<fork>"), ("pool_spawn", "process_pool<spawn>"),
    ("pool_forkserver", "process_pool<forkserver>"), ("per_call_fork", "processes<fork> per call"),
    ("per_call_spawn", "processes<spawn> per call"),
    ("per_call_forkserver", "processes<forkserver> per call"), ("omp", "OpenMP static"),
    ("tbb", "oneTBB parallel_for"), ("std_par", "std::execution::par"),
    ("socketpair", "raw socketpair round trip")]
PY_VARIANTS = [  # the first is every Python peer's baseline
    ("py_sequential", "Python loop"), ("py_pool_fork", "Pool (fork)"),
    ("py_pool_spawn", "Pool (spawn)"), ("py_pool_forkserver", "Pool (forkserver)"),
    ("py_process_pool_executor", "ProcessPoolExecutor"), ("py_joblib", "joblib (loky)")]
LABELS = dict(CPP_VARIANTS + PY_VARIANTS)

MODES = {
    "full": {"repetitions": 5, "min_time": 0.2, "work_s": 0.1, "min_items": 100,
             "counts": [100, 1000, 10**4, 10**5, 10**6], "bytes_items": 200,
             "params": 10**4, "budget": 1.5, "roundtrips": 2000},
    # The quick count family ends at the cost family's 1 us cell (2e4 items), which runs once.
    "quick": {"repetitions": 3, "min_time": 0.01, "work_s": 0.02, "min_items": 10,
              "counts": [100, 1000, 10**4, 2 * 10**4], "bytes_items": 50, "params": 2000,
              "budget": 0.3, "roundtrips": 500},
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


def cell(kind, param, n, label):
    return {"id": f"{kind}:{param}:{n}", "kind": kind, "param": param, "n": n, "label": label}


def grid(mode):
    """[(family, title, [cell])]; a cell may be in two families (it runs once)."""
    m = MODES[mode]
    cost = []
    for ns in COSTS_NS:
        n = int(min(10**7, max(m["min_items"], round(m["work_s"] * 1e9 / ns))))
        cost.append(cell("spin", ns, n, f"{fmt_ns(ns)} x {fmt_count(n)}"))
    count = [cell("spin", 1000, n, f"{fmt_count(n)} items") for n in m["counts"]]
    nb = m["bytes_items"]
    sizes = [cell("bytes", size, nb, f"{fmt_bytes(size)} x {nb}") for size in SIZES]
    idioms = [cell("square", 0, 10**6, "square: x**2 over 1e6 ints"),
             cell("slow_pow", 100, 10, "slow_pow: 10 x 100 ms sleep, 5 workers"),
             dict(sizes[-1], label=f"{nb} results of 1 MiB"),
             cell("params", 0, m["params"], f"imap over {fmt_count(m['params'])} param dicts")]
    rt = m["roundtrips"]
    latency = [cell("roundtrip", 0, rt, f"submit + get, {fmt_count(rt)} one at a time"),
               cell("bytes", 64, 50, "a 50-item map of 64 B results"),
               dict(cell("startup", 0, STARTUP_ITEMS,
                         f"start 2 workers, x**2 over {fmt_count(STARTUP_ITEMS)} ints, end them"),
                    cpp_variants=STARTUP_VARIANTS, own_process=True)]
    never_slower = [
        dict(cell("spin", ns, n, f"{fmt_count(n)} x {fmt_ns(ns)}"), variants=NEVER_SLOWER_VARIANTS)
        for n in NEVER_SLOWER_COUNTS for ns in NEVER_SLOWER_COSTS_NS if n * ns <= m["work_s"] * 1e9]
    return [("cost", "Speedup against item cost (items of ~cost each; speedup over the "
             "sequential loop of the same run)", cost),
            ("count", "Speedup against number of items (1 us items)", count),
            ("bytes", f"Speedup against result size ({nb} results of each size)", sizes),
            ("idioms", "Python idioms: Pool.map, Pool.starmap, large results, Pool.imap", idioms),
            ("latency", "Fixed costs: time per call (median, min-max), and against one raw "
             "socketpair round trip of the same run", latency),
            ("never_slower", "Never slower than the sequential loop: parallel::threads map over "
             f"items x item costs (cells of up to {fmt_ns(m['work_s'] * 1e9)} of sequential work; "
             "speedup over the sequential loop of the same run)", never_slower)]


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
                "The start-up cell starts its workers in the call and ends them before it "
                "returns: processes<...> per call in C++; in Python a pool made and closed "
                "around the map (with Pool(2) as p: p.map(square, xs)); the loops are there for "
                "scale. It runs in a program of its own on each side: a fork costs more in a "
                "larger process (here ~60 us more per MiB the parent has mapped), and the "
                "grid's, after the other cells, took about twice as long on both sides."],
    "never_slower": ["Only the sequential loop, parallel::threads and the C++ peers run these "
                     "cells (- : more sequential work than the title's limit). A 1 ns item is one "
                     "spin round: 'loop, per item' is what an item measured in the sequential "
                     "loop, in each column's largest cell."],
    "idioms": ["slow_pow sleeps, so its ideal is 5x on 5 workers (threads{.workers = 5}, pools of "
              "5, OpenMP num_threads(5), a oneTBB task_arena of 5; std::execution::par cannot be "
              "given a thread count and runs on oneTBB's 2).",
              "The OpenMP, oneTBB and std::execution::par columns of starmap and imap run the "
              "same function into a vector: they have neither verb. Python's imap uses each "
              "library's default chunksize, as a call without one does (Pool.imap: 1)."],
}

# --- the machine and its load -----------------------------------------------------------------


def machine():
    """report.py's reading of the machine, under the keys compare.json has always used."""
    m = report.machine()
    return {"cpu": m["cpu"], "cores": m["cores"], "usable": m["usable_cores"], "system": m["system"]}


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
    """bench_compare's --cell: the cell, and the only variants it runs if it names them."""
    chosen = c.get("variants", c.get("cpp_variants"))
    variants = f"/{','.join(chosen)}" if chosen else ""
    return f"--cell={c['id']}{variants}"


def run_cpp(exe, cells, args, raw, name="cpp"):
    """Runs bench_compare; returns ({cell: {variant: {"seconds": [...]} | {"error": text}}},
    failure text or None)."""
    out = raw / f"{name}.json"
    command = [str(exe), *(cell_arg(c) for c in cells),
               f"--repetitions={args.repetitions}", f"--min-time={args.min_time}",
               f"--benchmark_out={out}", "--benchmark_out_format=json",
               "--benchmark_enable_random_interleaving=true"]
    status = subprocess.run(command, stdout=subprocess.DEVNULL).returncode
    failure = f"bench_compare exited with status {status}" if status else None
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
        slot = results.setdefault(cell_id, {}).setdefault(variant, {"seconds": []})
        if entry.get("error_occurred"):
            slot["error"] = entry.get("error_message", "error")
        else:
            slot["seconds"].append(entry["real_time"] * scale[entry.get("time_unit", "ns")])
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
    run to every timed entry. The range is the baseline's median over the entry's max and min."""
    for by_variant in results.values():
        for baseline, variants in (("sequential", CPP_VARIANTS), ("py_sequential", PY_VARIANTS)):
            base = by_variant.get(baseline, {}).get("seconds")
            base_median = statistics.median(base) if base else None
            for key, _ in variants:
                entry = by_variant.get(key)
                if not entry or not entry.get("seconds") or "error" in entry:
                    continue
                s = entry["seconds"]
                entry.update(median=statistics.median(s), min=min(s), max=max(s))
                if base_median:
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


def latency_table(cells, results):
    """(header, rows) for the latency family: time per call, and over the socketpair floor."""
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
            per = c["n"] if c["kind"] == "roundtrip" else 1
            text = f"{fmt_seconds(entry['median'] / per)} ({fmt_seconds(entry['min'] / per)}-" \
                   f"{fmt_seconds(entry['max'] / per)})"
            if floor and c["kind"] != "startup":
                text += f", {entry['median'] / per / floor:.2f}x floor"
            row.append(text)
        if any(x != "-" for x in row[1:]):
            rows.append(row)
    return header, rows


def family_table(cells, results):
    """(header, rows): one row per backend and peer, one column per cell."""
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
            row = [label] + [table_cell(results.get(c["id"], {}).get(key), i == 0) for c in cells]
            if any(x != "-" for x in row[1:]):
                rows.append(row)
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


TABLES = {"latency": latency_table, "never_slower": never_slower_table}  # the others: family_table


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
    """How many times longer Python's Pool (fork) takes than processes<fork> in the start-up
    cell, against the target."""
    for c in cells:
        if c["kind"] != "startup":
            continue
        ours = results.get(c["id"], {}).get("per_call_fork", {})
        theirs = results.get(c["id"], {}).get("py_pool_fork", {})
        if "median" in ours and "median" in theirs:
            ratio = theirs["median"] / ours["median"]
            return [f"{c['label']}: Python's Pool (fork) takes {ratio:.1f}x as long as "
                    f"processes<fork> (target >= {STARTUP_TARGET}x)"]
    return []


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
    return notes


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
    alone = [c for c in cells if c.get("own_process")]
    together = [c for c in cells if not c.get("own_process")]
    results, failure = run_cpp(exe, together, args, raw) if together else ({}, None)
    for c in alone:
        one, failure_alone = run_cpp(exe, [c], args, raw, name=f"cpp_{c['kind']}")
        results.update(one)
        failure = failure or failure_alone
    phases = {"C++": meter.stop()}
    print(f"C++ phase: {fmt_load(phases['C++'])}", flush=True)
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
            "python_note": python_note, "failures": failures}


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
        for note in notes:
            print(f"  {note}")
        markdown += [f"- {note}" for note in notes] + ([""] if notes else [])

    by_family = {f: cs for f, _, cs in families}
    if "cost" in by_family:
        header, rows = break_even(by_family["cost"], by_family.get("count", []), results)
        print(f"\n== break-even: where each backend pays off (medians of this run) ==\n"
              f"{render_text(header, rows)}")
        markdown += ["## Break-even (medians of this run)", "", render_markdown(header, rows), ""]

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
    parser.add_argument("--quick", action="store_true", help="the smaller grid, < 2 min")
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
