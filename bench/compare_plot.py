#!/usr/bin/python3
"""The plots of bench/compare.py, from its compare.json (python3-matplotlib):

    /usr/bin/python3 bench/compare_plot.py bench/results/compare.json [png]  # redraws next to it

speedup.svg  speedup over the sequential loop against item cost: the C++ backends and peers over
             the C++ loop, Python's pools over Python's loop; the 2-core ideal and 1x marked.
scaling.svg  time of one call per item, against the number of 1 us items and against the size
             of each result: where the fixed cost of a backend stops mattering (the curve
             flattens), and where moving results between processes takes over.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
import matplotlib.ticker  # noqa: E402

from compare import (CPP_VARIANTS, NOISY_CORES, PY_VARIANTS, fmt_bytes, fmt_count,  # noqa: E402
                     fmt_ns)

# Library backends solid, C++ peers dotted, Python dashed; one colour per backend.
STYLE = {
    "sequential": ("black", "-", "o"), "threads": ("tab:blue", "-", "o"),
    "pool_fork": ("tab:red", "-", "s"), "pool_spawn": ("tab:orange", "-", "s"),
    "pool_forkserver": ("tab:brown", "-", "s"), "per_call_fork": ("tab:red", "-.", "^"),
    "per_call_spawn": ("tab:orange", "-.", "^"), "per_call_forkserver": ("tab:brown", "-.", "^"),
    "omp": ("tab:green", ":", "D"), "tbb": ("tab:purple", ":", "D"),
    "std_par": ("tab:cyan", ":", "D"),
    "py_sequential": ("dimgray", "--", "o"), "py_pool_fork": ("tab:red", "--", "x"),
    "py_pool_spawn": ("tab:orange", "--", "x"), "py_pool_forkserver": ("tab:brown", "--", "x"),
    "py_process_pool_executor": ("tab:pink", "--", "x"), "py_joblib": ("tab:olive", "--", "x"),
}
LABELS = dict(CPP_VARIANTS + PY_VARIANTS)
SPEEDUP_TICKS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.5, 1, 2, 4]


def setup():
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "parallel", "font.size": 9,
                         "axes.grid": True, "grid.alpha": 0.3})


def line(ax, key, xs, ys, lows=None, highs=None, label=None):
    color, style, marker = STYLE[key]
    ax.plot(xs, ys, linestyle=style, marker=marker, color=color, markersize=4, linewidth=1.3,
            label=label or LABELS[key])
    if lows is not None:
        ax.vlines(xs, lows, highs, color=color, linewidth=0.8, alpha=0.6)


def speedup_range(cells, results):
    """The y limits of the speedup plots: every median and range, the ideal, some room."""
    values = [v for c in cells for e in results.get(c["id"], {}).values()
              for v in e.get("speedup", [])]
    return min(values + [0.5]) / 1.3, max(values + [4]) * 1.2


def speedup_panel(ax, cells, results, variants, cores, title, limits):
    for key, _ in variants[1:]:
        points = [(c["param"], results.get(c["id"], {}).get(key, {}).get("speedup"))
                  for c in cells]
        points = [(x, s) for x, s in points if s]
        if points:
            line(ax, key, [x for x, _ in points], [s[0] for _, s in points],
                 [s[1] for _, s in points], [s[2] for _, s in points])
    ax.axhline(cores, color="black", linestyle=(0, (6, 3)), linewidth=1)
    ax.text(0.01, cores * 1.05, f"{cores}-core ideal", fontsize=8,
            transform=ax.get_yaxis_transform())
    ax.axhline(1, color="gray", linewidth=1)
    ax.text(0.01, 1.05, "sequential loop", fontsize=8, color="gray",
            transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(*limits)
    ax.set_yticks([t for t in SPEEDUP_TICKS if limits[0] <= t <= limits[1]])
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}x"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([c["param"] for c in cells])
    ax.set_xticklabels([f"{fmt_ns(c['param'])}\n{fmt_count(c['n'])}" for c in cells])
    ax.set_xlabel("item cost, and number of items")
    ax.set_ylabel("speedup over the sequential loop (log)")
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
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
        limits = speedup_range(cost, results)
        speedup_panel(axes[0], cost, results, CPP_VARIANTS, cores,
                      "C++: over the C++ sequential loop", limits)
        speedup_panel(axes[1], cost, results, PY_VARIANTS, cores,
                      "Python 3 pools: over Python's own loop", limits)
        fig.suptitle(f"Speedup against item cost (median, min-max bars) - {subtitle}")
        fig.tight_layout()
        path = out_dir / f"speedup.{fmt}"
        fig.savefig(path, metadata={"Date": None})
        plt.close(fig)
        written.append(path)

    count, sizes = families.get("count"), families.get("bytes")
    if count or sizes:
        fig, axes = plt.subplots(1, 2, figsize=(13, 6))
        if count:
            time_panel(axes[0], count, results, lambda c: c["n"],
                       [fmt_count(c["n"]) for c in count], "number of items of ~1 us",
                       "Time per item against number of items")
        if sizes:
            time_panel(axes[1], sizes, results, lambda c: c["param"],
                       [fmt_bytes(c["param"]) for c in sizes],
                       f"size of each of the {sizes[0]['n']} results",
                       "Time per result against result size")
        handles, labels = axes[0 if count else 1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=7)
        fig.suptitle(f"Scaling (median, min-max bars; C++ solid and dotted, Python dashed) - "
                     f"{subtitle}")
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        path = out_dir / f"scaling.{fmt}"
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
