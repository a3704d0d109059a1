"""The sequential-functions study (S9b): its claim logic on synthetic results (a pass, a fail, the null) and a smoke
run end to end."""

import numpy as np
import pytest

from mesalab.studies.runner import run_study, study_config
from mesalab.studies.sequential_functions.claims import claims, spearman

N = 16
POS = np.arange(1, N + 1)
LSQ = np.where(POS > 4, 0.0, 1.0 - (POS - 1) / 4)          # least squares: exact once 4 examples identify w (cpu: d = k = 2)
NONE = np.ones(N)


def results(last_error, first_error=0.5, converged=True, grid=(0.0, 0.25, 0.5, 0.75)):
    """Synthetic results: every seed's error falls linearly from first_error to last_error[p]; its test-loss curve is
    flat over the last quarter of training (converged) or still falling there."""
    steps = list(range(0, 4001, 250))
    flat = np.r_[np.linspace(1.0, 0.02, 13), [0.02] * 4]
    falling = np.r_[[1.0] * 13, np.linspace(0.6, 0.02, 4)]
    by_p = {}
    for p in grid:
        errs = [np.linspace(first_error, e, N).tolist() for e in last_error[p]]
        by_p[f"{p:g}"] = {"model": errs, "lsq": (LSQ * (1 + 2 * p)).tolist(), "blind": (0.6 * NONE).tolist(),
                          "none": NONE.tolist(), "curves": [(flat if converged else falling).tolist()] * len(errs)}
    return {"grid": list(grid), "steps": steps, "time": [float(s) for s in steps], "by_p": by_p}


@pytest.fixture(scope="module")
def cfg():
    return study_config("sequential-functions", "cpu")


def rows_of(cfg, r):
    return {row.id: row for row in claims(cfg, r)}


def test_a_model_that_learns_in_context_and_degrades_with_noise_passes(cfg):
    r = results({0.0: [0.02] * 3, 0.25: [0.2] * 3, 0.5: [0.5] * 3, 0.75: [0.8] * 3})
    rows = rows_of(cfg, r)
    assert {k: v.verdict for k, v in rows.items()} == {
        "falls": "PASS", "approaches-lsq": "PASS", "noise-hurts": "PASS", "beats-no-context": "PASS",
        "lsq-exact": "PASS"}
    assert rows["approaches-lsq"].measured == pytest.approx(0.98)
    assert rows["noise-hurts"].measured == pytest.approx(1.0)


def test_a_model_that_ignores_the_context_fails(cfg):
    """The null: an untrained-like or context-blind model keeps the no-context error at every position and p."""
    r = results({p: [1.0] * 3 for p in (0.0, 0.25, 0.5, 0.75)}, first_error=1.0)
    rows = rows_of(cfg, r)
    for rid in ("falls", "approaches-lsq", "noise-hurts", "beats-no-context"):
        assert rows[rid].verdict != "PASS", rid


def test_half_learned_and_still_falling_is_inconclusive_or_fails(cfg):
    r = results({0.0: [0.3] * 3, 0.25: [0.4] * 3, 0.5: [0.6] * 3, 0.75: [0.7] * 3}, converged=False)
    rows = rows_of(cfg, r)
    assert rows["approaches-lsq"].verdict in ("FAIL", "INCONCLUSIVE")       # closes 70% of the gap
    assert rows["approaches-lsq"].verdict == "INCONCLUSIVE"                 # the curve is still falling
    # Noise that does not hurt in order: ρ below 0.8 fails.
    r = results({0.0: [0.02] * 3, 0.25: [0.5] * 3, 0.5: [0.3] * 3, 0.75: [0.4] * 3})
    assert rows_of(cfg, r)["noise-hurts"].verdict == "FAIL"


def test_spearman_handles_ties_and_constants():
    assert spearman(np.arange(4), np.asarray([1, 2, 3, 4])) == pytest.approx(1.0)
    assert spearman(np.arange(4), np.asarray([4, 3, 2, 1])) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.arange(4), np.ones(4)))


@pytest.mark.slow  # a whole-study run: CI's lowest-versions step leaves it out
def test_smoke_run_writes_rows_with_nulls(tmp_path):
    import json

    out = run_study("sequential-functions", "smoke", out=tmp_path / "s9b", progress=False)
    rows = json.loads((out / "claims.json").read_text())["claims"]
    assert {r["id"] for r in rows} == {"falls", "approaches-lsq", "noise-hurts", "beats-no-context", "lsq-exact"}
    assert all(r["null_verdict"] in ("FAIL", "INCONCLUSIVE", "NOT RUN", None) for r in rows if r["kind"] == "finding")
    assert (out / "figures" / "errors.png").exists() and (out / "report.html").exists()
