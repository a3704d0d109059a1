"""The transience rows (studies/induction_classification/transience.py) on synthetic curves: a pass, a fail, the
null, and the not-run row at the cpu preset."""

import math

import numpy as np

from mesalab.studies.induction_classification import PRESETS
from mesalab.studies.induction_classification.transience import lost_fraction, transience_rows

CFG = PRESETS["smoke"]  # n_pairs 4: baseline 1/N = 0.25


def _part(ic_curve, steps):
    n = len(ic_curve)
    return {"steps": steps, "time": list(range(n)), "curves": {
        "ic_accuracy": [list(ic_curve)] * 3, "iw_accuracy": [list(np.linspace(0.1, 0.9, n))] * 3,
        "test_loss": [list(np.geomspace(3.0, 0.01, n))] * 3}}


def _results(no_l2, l2):
    steps = list(range(0, 100 * len(no_l2), 100))
    p = {"no_l2": _part(no_l2, steps), "l2": _part(l2, steps), "baseline": 1 / CFG.n_pairs}
    p["no_l2"]["l2"], p["l2"]["l2"] = 0.0, 1e-4
    return {"transience": p}


RISE_FALL = [0.25, 0.3, 0.9, 0.95, 0.7, 0.4, 0.3, 0.28]
RISE_STAY = [0.25, 0.3, 0.9, 0.95, 0.94, 0.93, 0.93, 0.92]


def _verdicts(r):
    return {row.id: row.verdict for row in transience_rows(CFG, r)}


def test_lost_fraction_needs_emergence():
    assert math.isnan(lost_fraction([0.25, 0.4, 0.3], 0.25))  # the peak is not half-way to 1
    assert lost_fraction([0.25, 1.0, 0.625], 0.25) == 0.5


def test_transient_icl_with_persistent_l2_passes():
    assert _verdicts(_results(RISE_FALL, RISE_STAY)) == {"icl-transient": "PASS", "l2-keeps-icl": "PASS"}


def test_no_fade_fails_both_rows():
    v = _verdicts(_results(RISE_STAY, RISE_STAY))
    assert v["l2-keeps-icl"] == "FAIL"
    assert v["icl-transient"] in ("FAIL", "INCONCLUSIVE")  # the synthetic loss still falls: not converged


def test_null_fails():
    assert set(_verdicts(_results([0.25], [0.25])).values()) == {"FAIL"}


def test_cpu_preset_does_not_run_it():
    assert PRESETS["cpu"].transience_steps == 0
    assert set(_verdicts({"transience": None}).values()) == {"NOT RUN"}


def test_the_class_count_change_is_listed_with_the_probe_verdict():
    for row in transience_rows(CFG, _results(RISE_FALL, RISE_STAY)):
        assert [c.old_verdict for c in row.changes if "transience_classes" in c.what] == ["FAIL"]
