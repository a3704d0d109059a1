"""The claim logic of gd-equivalence on synthetic results (no training): for every finding a passing case, a failing
case and the null (untrained models), plus the guards (learned, converged, seed majority), the GD++ definition
change and the checks."""

import dataclasses

import numpy as np
import pytest

from mesalab.studies.gd_equivalence import PRESETS, claims
from mesalab.studies.verdicts import value_of

CFG = PRESETS["cpu"]  # 4 seeds, d = N = 10, U(±0.5)
SEEDS = CFG.seeds
STEPS = [250 * i for i in range(1, 9)]
FINDINGS = ["gd1-loss", "pred-diff", "sens-cos", "weights-xblock", "weights-scale", "interpolated", "ood", "iterated",
            "beats-gd", "matches-gdpp-k2", "matches-gdpp-k3", "closer-gdpp", "copy", "nonlinear"]


def flat(level, seeds=SEEDS):
    """A converged history: the eval loss falls, then stays at `level`."""
    return {"steps": STEPS, "loss": [[2 * level] * 2 + [level] * (len(STEPS) - 2)] * seeds}


def trained():
    """Results of a run that reproduces every finding."""
    s = [1.0] * SEEDS
    return {
        "eta": 6.0, "gd_loss": 0.208, "zero_loss": 0.42, "ridge_loss": 0.01, "ols_loss": 0.0, "mean_abs_gd_pred": 0.5,
        "gd_loss_rel_std": 1.6, "construction_max_diff": 1e-6, "history": flat(0.209),
        "members": {"loss": [0.209 * x for x in s], "pred_diff": [0.02] * SEEDS, "sens_cos": [0.999] * SEEDS,
                    "sens_l2": [0.01] * SEEDS, "offdiag_ratio": [0.01] * SEEDS, "ov_yy": [-0.6] * SEEDS,
                    "qk_rest": [0.01] * SEEDS, "ov_rest": [0.01] * SEEDS, "qk_scale": [0.5] * SEEDS,
                    "interp_loss": [0.2092] * SEEDS},
        "ood": {"alphas": [0.5, 1.0, 2.0], "tf": [[0.06] * SEEDS, [0.209] * SEEDS, [2.1] * SEEDS],
                "gd": [0.058, 0.208, 2.0]},
        "iterated": {"depth": [1, 2, 3], "tf": [[0.25, 0.2, 0.17]] * SEEDS, "gd": [0.245, 0.2, 0.168]},
        "depth": {"depths": [2, 3], "tf": [[0.09] * SEEDS, [0.044] * SEEDS], "gd": [0.158, 0.134], "gd_eta": [6.0, 5.9],
                  "gdpp": [0.092, 0.0425], "gdpp_eta": [[4.1, 36.0], [4.0, 20.0, 90.0]],
                  "gdpp_gamma": [[0.4, 0.0], [0.4, 0.6, 0.0]], "gdpp_adam": [0.105, 0.054],
                  "gdpp_adam_eta": [[21.0, 10.9], [86.0, 25.0, 29.0]],
                  "gdpp_adam_gamma": [[0.15, 0.0], [0.17, 0.44, 0.0]],
                  "gdpp_construction_diff": [1e-6, 2e-6], "cos_gdpp": [[0.995] * SEEDS, [0.99] * SEEDS],
                  "cos_gd": [[0.93] * SEEDS, [0.9] * SEEDS], "pred_diff_gd": [[0.1] * SEEDS] * 2,
                  "pred_diff_gdpp": [[0.02] * SEEDS] * 2, "history": [flat(0.09), flat(0.044)], "seconds": [1.0, 1.0]},
        "copying": {"sensitivity": [[0.1, 0.5, 0.1]] * SEEDS, "labels": ["own", "next", "other"],
                    "loss": [0.22] * SEEDS, "history": flat(0.22)},
        # sine regression: zero predictor 0.025, E[y | x_q] 0.0166 (the best context-free predictor)
        "nonlinear": {"zero_loss": 0.0251, "mean_loss": 0.0267, "prior_loss": 0.0166, "raw_gd_loss": 0.0250,
                      "raw_gd_eta": 0.02, "gd_eta": 0.1, "steps": 2000, "seconds": [1.0, 1.0],
                      "members": {"loss": [0.0025] * SEEDS, "gd_loss": [0.0026] * SEEDS, "pred_diff": [0.2] * SEEDS,
                                  "sens_cos": [0.95] * SEEDS},
                      "history": flat(0.0025), "gd_history": flat(0.0026)},
    }


def untrained():
    """The null: every model at initialisation, ≈ the zero predictor, one evaluation at step 0."""
    r = trained()
    at0 = lambda v: {"steps": [0], "loss": [[v]] * SEEDS}  # noqa: E731
    r["history"] = at0(0.42)
    r["members"].update(loss=[0.421] * SEEDS, pred_diff=[0.5] * SEEDS, sens_cos=[0.05] * SEEDS,
                        offdiag_ratio=[1.2] * SEEDS, ov_yy=[-1e-4] * SEEDS, interp_loss=[np.nan] * SEEDS)
    r["ood"]["tf"] = [[0.105] * SEEDS, [0.42] * SEEDS, [1.68] * SEEDS]
    r["iterated"]["tf"] = [[0.42, 0.42, 0.42]] * SEEDS
    d = r["depth"]
    d.update(tf=[[0.421] * SEEDS] * 2, cos_gdpp=[[0.1] * SEEDS] * 2, cos_gd=[[0.05] * SEEDS] * 2,
             history=[at0(0.42), at0(0.42)])
    r["copying"].update(sensitivity=[[0.3, 0.3, 0.3]] * SEEDS, loss=[0.5] * SEEDS, history=at0(0.5))
    # both untrained models are ≈ the zero predictor, so their losses agree: only the learned guard fails them
    r["nonlinear"].update(history=at0(0.0251), gd_history=at0(0.0251))
    r["nonlinear"]["members"].update(loss=[0.0251] * SEEDS, gd_loss=[0.0250] * SEEDS, sens_cos=[0.3] * SEEDS)
    return r


def verdicts(r):
    return {row.id: row.verdict for row in claims(CFG, r)}


def test_every_finding_passes_on_a_run_that_reproduces_it():
    rows = claims(CFG, trained())
    got = {r.id: r.verdict for r in rows if r.kind == "finding"}
    assert got == {k: "PASS" for k in FINDINGS}
    assert all(r.verdict == "PASS" for r in rows if r.kind == "check")
    assert "within 2% of optimal one-step GD" in value_of(rows, "gd1-loss").claim


def test_no_finding_passes_on_the_null():
    rows = claims(CFG, untrained())
    for row in rows:
        if row.kind == "finding":
            assert row.verdict in ("FAIL", "INCONCLUSIVE", "NOT RUN"), (row.id, row.verdict, row.measured)
            assert row.null
    # the learned guard is what fails them: the untrained models are the zero predictor
    assert "learned" in value_of(rows, "sens-cos").reason


# One mutation per finding: the statistic beyond its threshold while the models did learn.
FAILURES = {
    "gd1-loss": lambda r: r["members"].update(loss=[0.25] * SEEDS),
    "pred-diff": lambda r: r["members"].update(pred_diff=[0.06] * SEEDS),
    "sens-cos": lambda r: r["members"].update(sens_cos=[0.97] * SEEDS),
    "weights-xblock": lambda r: r["members"].update(offdiag_ratio=[0.08] * SEEDS),
    "weights-scale": lambda r: r["members"].update(ov_yy=[-0.5] * SEEDS),
    "interpolated": lambda r: r["members"].update(interp_loss=[0.22] * SEEDS),
    "ood": lambda r: r["ood"].update(tf=[[0.07] * SEEDS, [0.209] * SEEDS, [2.1] * SEEDS]),
    "iterated": lambda r: r["iterated"].update(tf=[[0.25, 0.2, 0.2]] * SEEDS),
    "beats-gd": lambda r: r["depth"]["tf"].__setitem__(1, [0.14] * SEEDS),
    "matches-gdpp-k2": lambda r: r["depth"]["tf"].__setitem__(0, [0.11] * SEEDS),
    "matches-gdpp-k3": lambda r: r["depth"]["tf"].__setitem__(1, [0.03] * SEEDS),  # better by more than the band
    "closer-gdpp": lambda r: r["depth"]["cos_gd"].__setitem__(1, [0.995] * SEEDS),
    "copy": lambda r: r["copying"].update(sensitivity=[[0.3, 0.5, 0.1]] * SEEDS),
    "nonlinear": lambda r: r["nonlinear"]["members"].update(loss=[0.0021] * SEEDS),  # −19%: more than GD
}


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_fails_when_its_statistic_does(finding):
    r = trained()
    FAILURES[finding](r)
    rows = claims(CFG, r)
    row = value_of(rows, finding)
    assert row.verdict == "FAIL", (row.measured, row.reason)
    assert "seeds satisfy" in row.reason  # judged on the statistic, not on a guard
    assert len(row.per_seed) == SEEDS and row.needed == "3 of 4 seeds"


def test_a_strict_majority_of_seeds_decides():
    r = trained()
    r["members"]["sens_cos"] = [0.999, 0.999, 0.999, 0.5]
    row = value_of(claims(CFG, r), "sens-cos")
    assert row.verdict == "PASS" and row.measured == pytest.approx(0.999)
    r["members"]["sens_cos"] = [0.999, 0.999, 0.5, 0.5]
    row = value_of(claims(CFG, r), "sens-cos")
    assert row.verdict == "FAIL" and row.measured == pytest.approx(0.5)


def test_a_seed_that_did_not_learn_counts_against():
    r = trained()
    r["members"]["loss"] = [0.209, 0.209, 0.4, 0.4]  # two seeds still at the zero predictor's plateau
    row = value_of(claims(CFG, r), "pred-diff")
    assert row.verdict == "FAIL" and "learned" in row.reason
    r["copying"]["loss"] = [0.22, 0.22, np.nan, 0.41]
    assert value_of(claims(CFG, r), "copy").verdict == "FAIL"


def test_end_of_training_findings_are_inconclusive_until_converged():
    r = trained()
    r["depth"]["history"][1] = {"steps": STEPS, "loss": [list(np.linspace(0.2, 0.044, len(STEPS)))] * SEEDS}
    rows = claims(CFG, r)
    row = value_of(rows, "matches-gdpp-k3")
    assert row.verdict == "INCONCLUSIVE" and "did not converge" in row.reason and "paper preset" in row.reason
    assert value_of(rows, "matches-gdpp-k2").verdict == "PASS"  # each depth on its own
    assert value_of(rows, "beats-gd").verdict == "PASS"  # not an end-of-training finding
    r = trained()
    r["history"] = {"steps": STEPS, "loss": [list(np.linspace(0.4, 0.209, len(STEPS)))] * SEEDS}
    assert verdicts(r)["gd1-loss"] == "INCONCLUSIVE"


def test_gdpp_is_judged_against_the_optimum_with_the_authors_fit_as_the_old_definition():
    r = trained()
    row = value_of(claims(CFG, r), "matches-gdpp-k3")
    assert row.measured == pytest.approx(0.044 / 0.0425 - 1)
    (change,) = [c for c in row.changes if "Adam" in c.what]
    assert change.old_verdict == "FAIL" and change.old_value == pytest.approx(0.044 / 0.054 - 1)
    assert "0.0540" in row.detail or "0.054" in row.detail


def test_checks_fail_on_a_wrong_baseline_or_construction():
    r = trained()
    r["gd_loss"] = 0.25  # GD-1 far from the reference 0.208
    r["construction_max_diff"] = 0.05
    r["depth"]["gdpp_construction_diff"] = [1e-6, 0.1]
    r["depth"]["gdpp"] = [0.11, 0.0425]  # the "optimum" worse than Adam's fit at K = 2
    got = verdicts(r)
    for id_ in ("gd1-reference", "gd-lsa-construction", "gdpp-lsa-construction", "gdpp-optimum"):
        assert got[id_] == "FAIL", id_
    assert got["gdk-reference"] == "PASS"


def test_claims_survive_missing_parts_and_nan():
    r = untrained()
    r["members"]["loss"] = [np.nan] * SEEDS
    r["depth"] = None
    r["copying"] = None
    r["nonlinear"] = None
    got = verdicts(r)
    assert got["nonlinear"] == "NOT RUN"
    assert got["copy"] == "NOT RUN" and got["beats-gd"] == "NOT RUN" and got["gd1-loss"] == "FAIL"
    other = dataclasses.replace(CFG, x_half_width=0.7)  # no reference number for this input range
    assert {row.id: row.verdict for row in claims(other, trained())}["gd1-reference"] == "NOT RUN"


def test_nonlinear_learned_guard_is_the_best_context_free_predictor_and_both_runs_must_converge():
    r = trained()
    # both models on the plateau of E[y | x_q] (0.0166): they agree, beat the zero predictor by 40%, learned nothing
    r["nonlinear"]["members"].update(loss=[0.0150] * SEEDS, gd_loss=[0.0152] * SEEDS)
    row = value_of(claims(CFG, r), "nonlinear")
    assert row.verdict == "FAIL" and "learned" in row.reason and "E[y | x_q]" in row.reason
    r = trained()
    r["nonlinear"]["prior_loss"] = 0.05  # then the zero predictor is the best trivial one
    r["nonlinear"]["members"].update(loss=[0.019] * SEEDS, gd_loss=[0.019] * SEEDS)  # 0.76 × 0.0251: not learned
    row = value_of(claims(CFG, r), "nonlinear")
    assert row.verdict == "FAIL" and "the zero predictor" in row.reason
    r = trained()
    r["nonlinear"]["gd_history"] = {"steps": STEPS, "loss": [list(np.linspace(0.02, 0.0026, len(STEPS)))] * SEEDS}
    row = value_of(claims(CFG, r), "nonlinear")
    assert row.verdict == "INCONCLUSIVE" and "did not converge" in row.reason and "paper preset" in row.reason
    assert "one GD step on the raw x" in row.null
