"""evaluate() and format_table(): the one-call summary."""
import math

import numpy as np

from minigan.metrics import (evaluate, format_table, memorization, ndb, precision_recall,
                             sliced_wasserstein)
from tests.metrics.synthetic import blobs

KEYS = {"swd_32", "swd_16", "swd_mean", "precision", "recall", "ndb", "ndb_ratio", "ndb_js",
        "ndb_bins", "nn_dist_min", "nn_dist_median", "nn_dist_mean", "nn_frac_below"}
REAL, FAKE = blobs(120, seed=1), blobs(100, seed=2)


def test_evaluate_is_the_four_metrics_in_one_flat_dict():
    timings = {}
    results = evaluate(REAL, FAKE, seed=3, timings=timings)
    assert set(results) == KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in results.values())
    assert {"swd", "precision_recall", "ndb", "memorization", "total"} <= set(timings)

    swd = sliced_wasserstein(REAL, FAKE, seed=3)
    assert results["swd_32"] == swd["levels"][32] and results["swd_mean"] == swd["mean"]
    pr = precision_recall(REAL, FAKE)
    assert (results["precision"], results["recall"]) == (pr["precision"], pr["recall"])
    bins = ndb(REAL, FAKE, seed=3)
    assert (results["ndb"], results["ndb_js"]) == (bins["ndb"], bins["js"])
    assert results["nn_dist_median"] == memorization(REAL, FAKE)["median"]


def test_evaluate_is_order_independent():
    rng = np.random.default_rng(0)
    assert (evaluate(REAL[rng.permutation(120)], FAKE[rng.permutation(100)], seed=3)
            == evaluate(REAL, FAKE, seed=3))


def test_format_table_aligns_two_columns():
    text = format_table({"swd_mean": 12.3456, "precision": 0.5, "ndb": 7.0}, title="run 1")
    lines = text.splitlines()
    assert lines[0] == "run 1"
    assert lines[1].split() == ["metric", "value"] and set(lines[2]) == {"-"}
    assert [ln.split() for ln in lines[3:]] == [["swd_mean", "12.35"], ["precision", "0.5"],
                                                ["ndb", "7"]]
    assert len({len(ln) for ln in lines[1:]}) == 1          # every row the same width
