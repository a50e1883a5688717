#!/usr/bin/python3
"""The plots of bench/compare.py, from its compare.json (python3-matplotlib):

    /usr/bin/python3 bench/compare_plot.py bench/results/compare.json [png]  # redraws next to it

speedup.svg  speedup over the sequential loop against item cost, in three panels: the library's
             backends and the C++ peers over the C++ loop, Python's pools over Python's loop;
             the 2-core ideal and 1x marked.
scaling.svg  time of one call per item, against the number of 1 us items and against the size
             of each result: where the fixed cost of a backend stops mattering (the curve
             flattens), and where moving results between processes takes over.
choose.svg   which backend for my item cost: the cost family's speedups of parallel::threads,
             of the best process_pool<...> and the best processes<...> per call (the start
             method with the highest geometric-mean speedup), the C++ peers' range and Python's
             best pool, each named at its right end; under them the pick per cost range, for
             thread-safe code and for code that needs processes, from the same medians (picks()).
"""

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
import matplotlib.ticker  # noqa: E402
import matplotlib.transforms  # noqa: E402

from compare import (CPP_VARIANTS, NOISY_CORES, PY_VARIANTS, fmt_bytes, fmt_count,  # noqa: E402
                     fmt_ns)

# Library backends solid (per call: dash-dot), C++ peers dotted, Python dashed with x markers.
# A colour means one thing: in C++ the start method (pool and per call alike), and Python has
# colours of its own.
STYLE = {
    "sequential": ("black", "-", "o"), "threads": ("tab:blue", "-", "o"),
    "pool_fork": ("tab:red", "-", "s"), "pool_spawn": ("tab:orange", "-", "s"),
    "pool_forkserver": ("tab:brown", "-", "s"), "per_call_fork": ("tab:red", "-.", "^"),
    "per_call_spawn": ("tab:orange", "-.", "^"), "per_call_forkserver": ("tab:brown", "-.", "^"),
    "omp": ("tab:green", ":", "D"), "tbb": ("tab:purple", ":", "v"),
    "std_par": ("tab:cyan", ":", "P"),
    "py_sequential": ("dimgray", "--", "o"), "py_pool_fork": ("tab:pink", "--", "x"),
    "py_pool_spawn": ("gold", "--", "x"), "py_pool_forkserver": ("tab:olive", "--", "x"),
    "py_process_pool_executor": ("navy", "--", "x"), "py_joblib": ("teal", "--", "x"),
}
LABELS = dict(CPP_VARIANTS + PY_VARIANTS)
SPEEDUP_TICKS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.5, 1, 2, 4]
LIBRARY = CPP_VARIANTS[1:8]  # threads, the pools, per call
PEERS = [(k, label) for k, label in CPP_VARIANTS if k in ("omp", "tbb", "std_par")]

# choose.svg: one line per kind of backend, the best start method of each kind.
POOLS = ("pool_fork", "pool_spawn", "pool_forkserver")
PER_CALL = ("per_call_fork", "per_call_spawn", "per_call_forkserver")
PY_POOLS = ("py_pool_fork", "py_pool_spawn", "py_pool_forkserver", "py_process_pool_executor",
            "py_joblib")
NEAR_IDEAL = 0.9  # processes per call join the pick from 90% of the ideal (compare.md's 1.8x)
ROLE = {"loop": "silver", "threads": "tab:blue", "pool": "tab:red", "per_call": "tab:orange",
        "peers": "tab:green", "python": "dimgray"}


def setup():
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "parallel", "font.size": 9,
                         "axes.grid": True, "grid.alpha": 0.3})


def line(ax, key, xs, ys, lows=None, highs=None, label=None):
    color, style, marker = STYLE[key]
    ax.plot(xs, ys, linestyle=style, marker=marker, color=color, markersize=4, linewidth=1.3,
            label=label or LABELS[key])
    if lows is not None:
        ax.vlines(xs, lows, highs, color=color, linewidth=0.8, alpha=0.6)


def speedup(results, cell, key):
    """[median, low, high] speedup of key in cell over its loop, or None."""
    return results.get(cell["id"], {}).get(key, {}).get("speedup")


def speedup_range(cells, results):
    """The y limits of the speedup plots: every median and range, the ideal, some room."""
    values = [v for c in cells for e in results.get(c["id"], {}).values()
              for v in e.get("speedup", [])]
    return min(values + [0.5]) / 1.3, max(values + [4]) * 1.2


def speedup_axes(ax, cells, cores, limits, xlabels):
    """The 1x and ideal lines, log axes, ticks in x and item costs, of a speedup plot."""
    ax.axhline(cores, color="black", linestyle=(0, (6, 3)), linewidth=1)
    ax.axhline(1, color="gray", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(*limits)
    ax.set_yticks([t for t in SPEEDUP_TICKS if limits[0] <= t <= limits[1]])
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}x"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([c["param"] for c in cells])
    ax.set_xticklabels(xlabels)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def speedup_panel(ax, cells, results, variants, cores, title, limits):
    # Each variant a little to the side of the cell, so that its min-max bar shows.
    for i, (key, _) in enumerate(variants):
        dodge = 10 ** (0.025 * (i - (len(variants) - 1) / 2))
        points = [(c["param"] * dodge, speedup(results, c, key)) for c in cells]
        points = [(x, s) for x, s in points if s]
        if points:
            line(ax, key, [x for x, _ in points], [s[0] for _, s in points],
                 [s[1] for _, s in points], [s[2] for _, s in points])
    speedup_axes(ax, cells, cores, limits,
                 [f"{fmt_ns(c['param'])}\n{fmt_count(c['n'])}" for c in cells])
    ax.text(0.01, cores * 1.05, f"{cores}-core ideal", fontsize=8,
            transform=ax.get_yaxis_transform())
    ax.text(0.01, 1.05, "sequential loop", fontsize=8, color="gray",
            transform=ax.get_yaxis_transform())
    ax.set_xlabel("item cost, and number of items")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")


def time_panel(ax, cells, results, x_of, xticklabels, xlabel, title):
    for key, _ in CPP_VARIANTS + PY_VARIANTS:
        points = [(x_of(c), results.get(c["id"], {}).get(key, {})) for c in cells]
        points = [(x, c["n"], e) for (x, e), c in zip(points, cells) if "median" in e]
        if points:
            line(ax, key, [x for x, _, _ in points], [e["median"] / n for _, n, e in points],
                 [e["min"] / n for _, n, e in points], [e["max"] / n for _, n, e in points])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([x_of(c) for c in cells])
    ax.set_xticklabels(xticklabels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("time of one call / its items, s (log)")
    ax.set_title(title)


def grouped_legends(fig, axes):
    """One legend per group (the library, the C++ peers, Python) under the panels."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    groups = [("parallel (C++): solid, per call dash-dot", CPP_VARIANTS[:8], 4, 0.01),
              ("C++ peers: dotted", PEERS, 1, 0.53), ("Python 3: dashed", PY_VARIANTS, 3, 0.66)]
    for title, variants, ncol, x in groups:
        shown = [label for _, label in variants if label in handles]
        if shown:
            fig.add_artist(fig.legend([handles[label] for label in shown], shown, ncol=ncol,
                                      fontsize=7, title=title, title_fontsize=7.5,
                                      loc="lower left", bbox_to_anchor=(x, 0)))


# --- choose.svg -------------------------------------------------------------------------------


def best_of(cells, results, keys):
    """The key of keys with the highest geometric-mean median speedup over the cells where all
    of them have one (over its own cells if there are none such); None if none has one."""
    ran = {k: {c["id"]: s[0] for c in cells if (s := speedup(results, c, k))} for k in keys}
    ran = {k: v for k, v in ran.items() if v}
    if not ran:
        return None
    common = set.intersection(*(set(v) for v in ran.values()))

    def score(key):
        values = [ran[key][i] for i in (common or ran[key])]
        return sum(math.log(v) for v in values) / len(values)
    return max(ran, key=score)


def crossing(cells, values, which, threshold):
    """The item cost from which values[i][which] (0: the median, 1 and 2: the low and high ends of
    the range) stays >= threshold up to the largest cost: where the line from the cell before
    crosses it (log-log); 0 when it holds at every cost, None when not at the largest."""
    i = len(cells)
    while i > 0 and values[i - 1] and values[i - 1][which] >= threshold:
        i -= 1
    if i == len(cells) or i == 0:
        return None if i else 0
    x0, x1 = cells[i - 1]["param"], cells[i]["param"]
    if not values[i - 1]:
        return math.sqrt(x0 * x1)
    v0, v1 = values[i - 1][which], values[i][which]
    return x0 * (x1 / x0) ** (math.log(threshold / v0) / math.log(v1 / v0))


def picks(cells, lines, cores):
    """The pick per cost range, one row for thread-safe code and one for code that needs
    processes: [(title, [(from cost, pick, shorter pick, colour)], [(x0, x1) unsure])]. A backend
    is the pick from the cost at which its median speedup rises above 1x for good (as compare.md's
    break-even: it stays there at every larger cost); processes per call join the pool from where
    their median reaches NEAR_IDEAL of the ideal. Unsure: from where the high end of the
    backend's min-max range crosses that line to where its low end does."""
    def level(role, threshold, text, short):
        values = lines[role][1]
        unsure = [crossing(cells, values, w, threshold) for w in (2, 1)]
        return (crossing(cells, values, 0, threshold), text, short, ROLE[role]), unsure

    rows = []
    loop = (0, "plain loop", "loop", ROLE["loop"])
    if "threads" in lines:
        threads, unsure = level("threads", 1, "parallel::threads", "threads")
        rows.append(("thread-safe\ncode", [loop, threads], [unsure]))
    if "pool" in lines:
        pool = LABELS[lines["pool"][0]]
        chosen = [level("pool", 1, pool, "process_pool")]
        if "per_call" in lines:
            per_call = LABELS[lines["per_call"][0]]
            chosen.append(level("per_call", NEAR_IDEAL * cores, f"{pool}\nor {per_call}",
                                "pool, or\nper call"))
        rows.append(("not thread-\nsafe code", [loop] + [c for c, _ in chosen],
                     [u for _, u in chosen]))
    return rows


def segments(levels, xlim):
    """[(x0, x1, level)] across xlim: at each x the last level whose cost is <= x."""
    edges = sorted({xlim[0], xlim[1]} | {c for c, *_ in levels if c and xlim[0] < c < xlim[1]})
    spans = []
    for x0, x1 in zip(edges, edges[1:]):
        middle = math.sqrt(x0 * x1)
        level = max(i for i, (c, *_) in enumerate(levels) if c is not None and c <= middle)
        if spans and spans[-1][2] == level:
            spans[-1] = (spans[-1][0], x1, level)
        else:
            spans.append((x0, x1, level))
    return spans


def fit_text(ax, x0, x1, texts, last, **style):
    """The first of texts that fits between x0 and x1, centred; else the last one, from x0 on
    when last (the rightmost span: it may run into the empty margin)."""
    renderer = ax.figure.canvas.get_renderer()
    room = ax.transData.transform((x1, 0))[0] - ax.transData.transform((x0, 0))[0] - 4
    for text in texts:
        shown = ax.text(math.sqrt(x0 * x1), 0.5, text, ha="center", va="center", **style)
        box = shown.get_window_extent(renderer)
        if box.width <= room and box.height <= ax.get_window_extent().height:
            return
        shown.remove()
    if last:
        ax.text(x0 * 1.05, 0.5, texts[-1], ha="left", va="center", clip_on=False, **style)
    else:
        ax.text(math.sqrt(x0 * x1), 0.5, texts[-1], ha="center", va="center", **style)


def label_ends(ax, ends, fontsize=8):
    """Names each line at its right end, in the margin: [(x, y, text, colour)], moved apart
    (in log y) so that no two overlap, with a leader from the line's end to its name."""
    if not ends:
        return
    low, high = (math.log10(v) for v in ax.get_ylim())
    height = ax.get_window_extent().height * 72 / ax.figure.dpi  # points
    per_line = fontsize * 1.3 * (high - low) / height  # a text line, in log10 units
    ends = sorted(ends, key=lambda e: e[1])
    sizes = [per_line * (e[2].count("\n") + 1) for e in ends]
    places = [math.log10(e[1]) for e in ends]
    for i in range(1, len(places)):
        places[i] = max(places[i], places[i - 1] + (sizes[i - 1] + sizes[i]) / 2 + per_line / 2)
    shift = sum(math.log10(e[1]) for e in ends) / len(ends) - sum(places) / len(places)
    shift = min(shift, high - places[-1] - sizes[-1] / 2)  # keep the top one inside
    margin = matplotlib.transforms.blended_transform_factory(ax.transAxes, ax.transData)
    for (x, y, text, colour), place in zip(ends, places):
        ax.annotate(text, (x, y), xytext=(1.04, 10 ** (place + shift)), textcoords=margin,
                    color=colour, fontsize=fontsize, va="center", annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.6,
                                "shrinkA": 0, "shrinkB": 2})


def choose_plot(fig, cells, results, cores):
    """choose.svg: speedup against item cost of one line per kind of backend, and the pick."""
    values = {k: [speedup(results, c, k) for c in cells] for k in STYLE}
    lines = {"threads": "threads", "pool": best_of(cells, results, POOLS),
             "per_call": best_of(cells, results, PER_CALL),
             "python": best_of(cells, results, PY_POOLS)}
    lines = {role: (k, values[k]) for role, k in lines.items() if k and any(values[k])}
    rows = picks(cells, lines, cores)
    grid = fig.add_gridspec(1 + len(rows), 1, height_ratios=[1] + [0.12] * len(rows),
                            hspace=0.1, left=0.12, right=0.72, top=0.88, bottom=0.15)
    ax = fig.add_subplot(grid[0])
    xs = [c["param"] for c in cells]
    xlim = (xs[0] / 1.5, xs[-1] * 1.5)
    drawn = [k for k, _ in lines.values()] + ["omp", "tbb", "std_par"]
    shown = [v for k in drawn for v in values[k] if v]
    limits = (min([s[1] for s in shown] + [0.5]) / 1.25,
              max([s[2] for s in shown] + [cores]) * 1.3)
    speedup_axes(ax, cells, cores, limits, [fmt_ns(x) for x in xs])
    ax.set_xlim(*xlim)
    ax.text(math.sqrt(xs[0] * xs[-1]), cores * 1.03, f"{cores}-core ideal", fontsize=8,
            va="bottom", ha="center")
    ax.text(xlim[0] * 1.1, 0.97, "below 1x: slower than the plain loop", fontsize=8,
            color="dimgray", va="top")

    ends = []
    peers = [[values[k][i] for k in ("omp", "tbb", "std_par") if values[k][i]]
             for i in range(len(cells))]
    band = [(x, min(s[0] for s in p), max(s[0] for s in p)) for x, p in zip(xs, peers) if p]
    if band:
        ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                        color=ROLE["peers"], alpha=0.2, linewidth=0)
        ends.append((band[-1][0], math.sqrt(band[-1][1] * band[-1][2]),
                     "C++ peers' range: OpenMP,\noneTBB, std::execution::par", ROLE["peers"]))
    styles = {"threads": ("-", "o", 2.2), "pool": ("-", "s", 1.8), "per_call": ("-.", "^", 1.6),
              "python": ("--", "x", 1.4)}
    for role, (key, vs) in lines.items():
        points = [(x, v) for x, v in zip(xs, vs) if v]
        style, marker, width = styles[role]
        ax.plot([x for x, _ in points], [v[0] for _, v in points], color=ROLE[role],
                linestyle=style, marker=marker, markersize=4.5, linewidth=width, zorder=3)
        ax.vlines([x for x, _ in points], [v[1] for _, v in points], [v[2] for _, v in points],
                  color=ROLE[role], linewidth=0.8, alpha=0.5, zorder=3)
        name = f"Python: {LABELS[key]}, over\nPython's own loop" if role == "python" else (
            LABELS[key])
        ends.append((points[-1][0], points[-1][1][0], name, ROLE[role]))
    ax.set_ylabel("speedup over the plain loop (log)")
    label_ends(ax, ends)
    bottom = ax

    for i, (title, levels, unsure) in enumerate(rows):
        strip = fig.add_subplot(grid[1 + i], sharex=ax)
        bottom.tick_params(labelbottom=False)
        bottom = strip
        strip.grid(False)
        strip.set_yticks([0.5])
        strip.set_yticklabels([title], fontsize=8)
        strip.tick_params(left=False)
        strip.set_ylim(0, 1)
        for x0, x1 in unsure:
            x1 = xlim[1] if x1 is None else x1
            if x0 is not None and x1 > x0:
                strip.axvspan(max(x0, xlim[0]), x1, facecolor="none", edgecolor="gray",
                              hatch="////", linewidth=0, zorder=2)
        spans = segments(levels, xlim)
        for x0, x1, n in spans:
            cost, text, short, colour = levels[n]
            strip.axvspan(x0, x1, color=colour, alpha=0.3, linewidth=0)
            texts = [text, short]
            if x0 > xlim[0]:
                texts.insert(0, f"{text}\nfrom {fmt_ns(float(f'{cost:.2g}'))}")
            fit_text(strip, x0, x1, texts, x1 == spans[-1][1], fontsize=7.5, linespacing=1.0,
                     zorder=3)
            if x0 > xlim[0]:
                strip.axvline(x0, color="black", linewidth=0.8)
                ax.axvline(x0, color=colour, linewidth=0.8, linestyle=":", zorder=1)
    bottom.set_xlabel(f"cost of one item (log; {fmt_count(cells[0]['n'])} items of "
                      f"{fmt_ns(xs[0])} .. {fmt_count(cells[-1]['n'])} of {fmt_ns(xs[-1])})")
    fig.text(0.5, 0.005, "Pick: each backend from the cost where its median rises above 1x for "
             f"good (processes per call: above {NEAR_IDEAL:.0%} of the ideal);\nhatched where "
             "its min-max range straddles that line. Bars: min-max of the repetitions.\n"
             "Process lines: the start method with the best geometric-mean speedup over the "
             "costs.", ha="center", va="bottom", fontsize=7, color="dimgray")
    return ax


def plot(document, out_dir, fmt="svg"):
    """Writes the plots the document has data for into out_dir; returns their paths."""
    setup()
    out_dir = Path(out_dir)
    families = {f["name"]: f["cells"] for f in document["families"]}
    results = document["results"]
    cores = document["machine"].get("usable") or document["machine"]["cores"]
    when = document["heading"][0].split(",")[0]
    subtitle = f"{document['machine']['cpu']}, {cores} cores, {when}, {document['mode']} mode"
    others = max((p["other_cores"] for p in document.get("phases", {}).values()), default=0)
    if others > NOISY_CORES:
        subtitle += (f"\nNOT QUIET: other processes kept up to {others:.2f} cores busy during "
                     "the run")
    written = []

    cost = families.get("cost")
    if cost:
        fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), sharey=True)
        limits = speedup_range(cost, results)
        speedup_panel(axes[0], cost, results, LIBRARY, cores,
                      "parallel: over the C++ sequential loop", limits)
        speedup_panel(axes[1], cost, results, PEERS, cores,
                      "C++ peers: over the C++ sequential loop", limits)
        speedup_panel(axes[2], cost, results, PY_VARIANTS[1:], cores,
                      "Python 3 pools: over Python's own loop", limits)
        axes[0].set_ylabel("speedup over the sequential loop (log)")
        fig.suptitle(f"Speedup against item cost (median, min-max bars) - {subtitle}")
        fig.tight_layout()
        path = out_dir / f"speedup.{fmt}"
        fig.savefig(path, metadata={"Date": None})
        plt.close(fig)
        written.append(path)

    count, sizes = families.get("count"), families.get("bytes")
    if count or sizes:
        fig, axes = plt.subplots(1, 2, figsize=(13, 6.6))
        if count:
            time_panel(axes[0], count, results, lambda c: c["n"],
                       [fmt_count(c["n"]) for c in count], "number of items of ~1 us",
                       "Time per item against number of items")
        if sizes:
            time_panel(axes[1], sizes, results, lambda c: c["param"],
                       [fmt_bytes(c["param"]) for c in sizes],
                       f"size of each of the {sizes[0]['n']} results",
                       "Time per result against result size")
        grouped_legends(fig, axes)
        fig.suptitle(f"Scaling (median, min-max bars) - {subtitle}")
        fig.tight_layout(rect=(0, 0.12, 1, 1))
        path = out_dir / f"scaling.{fmt}"
        fig.savefig(path, metadata={"Date": None})
        plt.close(fig)
        written.append(path)

    if cost:
        fig = plt.figure(figsize=(8.4, 6.4))
        choose_plot(fig, cost, results, cores)
        fig.suptitle(f"Which backend for my item cost? ({cores} cores, speedup over the plain "
                     f"loop)\n{subtitle}", fontsize=10)
        path = out_dir / f"choose.{fmt}"
        fig.savefig(path, metadata={"Date": None})
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    source = Path(sys.argv[1])
    for p in plot(json.loads(source.read_text()), source.parent, *sys.argv[2:]):
        print(f"wrote {p}")
