"""The quality table: mean and spread over seeds of what `minigan eval` measured for each recipe.

    python benchmarks/quality/table.py RUNS_DIR NAME[=LABEL] ...   # RUNS_DIR/NAME_s<seed>.eval.json

Prints a Markdown table (mean +- sample standard deviation, and the worst seed: the highest SWD,
the lowest recall) and the training steps and wall seconds of each run.
"""
import glob
import json
import os
import re
import sys

import numpy as np

COLUMNS = [("swd_mean", "SWD", "{:.1f}"), ("precision", "precision", "{:.2f}"), ("recall", "recall", "{:.2f}"),
           ("ndb", "NDB /{bins}", "{:.1f}"), ("nn_dist_min", "nearest-train RMS (min)", "{:.3f}"),
           ("nn_dist_median", "nearest-train RMS (median)", "{:.3f}")]


def runs(folder, name):
    found = []
    for path in sorted(glob.glob(os.path.join(folder, f"{name}_s*.eval.json"))):
        seed = int(re.search(r"_s(\d+)\.eval\.json$", path).group(1))
        with open(path) as f:
            results = json.load(f)
        log = os.path.join(folder, f"{name}_s{seed}", "log.csv")
        steps = int(open(log).read().splitlines()[-1].split(",")[header(log).index("step")]) if os.path.exists(log) else 0
        with open(os.path.join(folder, f"{name}_s{seed}.time.json")) as f:
            wall = json.load(f)["train_wall_s"]
        found.append((seed, results, steps, wall))
    return found


def header(log):
    with open(log) as f:
        return f.readline().strip().split(",")


def main(folder, names):
    bins = None
    rows = []
    for spec in names:
        name, _, label = spec.partition("=")
        found = runs(folder, name)
        if not found:
            continue
        bins = bins or int(found[0][1]["ndb_bins"])
        cells = []
        for key, _, fmt in COLUMNS:
            values = np.array([r[key] for _, r, _, _ in found])
            spread = f" ± {fmt.format(values.std(ddof=1))}" if len(values) > 1 else ""
            cells.append(fmt.format(values.mean()) + spread)
        swd = max(r["swd_mean"] for _, r, _, _ in found)
        recall = min(r["recall"] for _, r, _, _ in found)
        below = max(r["nn_frac_below"] for _, r, _, _ in found)
        steps = "/".join(str(s) for _, _, s, _ in found)
        wall = "/".join(str(w) for _, _, _, w in found)
        rows.append(f"| {label or name} | {len(found)} | " + " | ".join(cells) +
                    f" | {swd:.1f} / {recall:.2f} | {below:.3f} | {steps} | {wall} |")
    titles = [t.format(bins=bins) for _, t, _ in COLUMNS]
    print("| recipe | seeds | " + " | ".join(titles) + " | worst seed SWD / recall | share within 0.1 RMS (max) "
          "| steps | train wall s |")
    print("|" + "---|" * (len(titles) + 6))
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
