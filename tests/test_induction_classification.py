"""Study S4 induction-classification: one smoke run end to end (its findings on the null), and the claim logic on
synthetic results: a passing case, a failing case and the null (step-0 histories) for every finding, the guards
(learned, converged, minimum effect) and the definition changes recorded with their old verdicts."""

import json
import math

import numpy as np
import pytest

from mesalab.config import ConfigError
from mesalab.studies import induction_classification as s4
from mesalab.studies.induction_classification import claims_sweeps
from mesalab.studies.runner import run_study
from mesalab.studies.verdicts import value_of

CFG = s4.PRESETS["cpu"]
N, L = CFG.n_pairs, CFG.n_labels
FINDINGS = ("abrupt", "plateau", "l-eq-n", "tila2-leads", "ic2", "ic-rises-with-b", "iw-falls-with-b",
            "ic-rises-with-k", "ic-rises-with-eps", "zipf-coexist")


# ---- one smoke run ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = run_study("induction-classification", "smoke", out=tmp_path_factory.mktemp("s4") / "run", progress=False)
    claims = json.loads((out / "claims.json").read_text())["claims"]
    return out, claims, json.loads((out / "results.json").read_text())


def test_smoke_run_findings_fail_on_their_null_and_artefacts_exist(smoke):
    out, claims, results = smoke
    # The smoke preset has no second K row (phase_classes = burst_classes), so no K finding; it runs the transience
    # part (tests/test_transience.py has its claim logic).
    assert {c["id"] for c in claims if c["kind"] == "finding"} == (set(FINDINGS) - {"ic-rises-with-k"}
                                                                  | {"icl-transient", "l2-keeps-icl"})
    for c in claims:
        if c["kind"] == "finding":
            assert c["null_verdict"] in {"FAIL", "INCONCLUSIVE", "NOT RUN"}, c["id"]
    main = results["main"]["curves"]
    assert set(main) >= {"ic_accuracy", "ic2_accuracy", "iw_accuracy", "ila1", "tila2", "tla2", "cla", "test_loss"}
    assert results["control"]["n_labels"] == 4  # L = N
    eps = results["phase"]["eps"]
    for key in ("ic", "iw", "ic_base", "ic_half_step"):
        assert np.asarray(eps[key]).shape == (2, 1), key  # [value, seed]
    assert len(eps["test_loss"]) == 2 and len(eps["test_loss"][0]) == len(eps["steps"])
    for name in ("training", "attention", "burstiness", "phase", "phenomenology"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert (out / "metrics.parquet").exists() and (out / "null_results.json").exists()


# ---- synthetic results ----------------------------------------------------------------------------------------------
STEPS = list(range(10, CFG.steps + 1, 10))


def _sigmoid(t, at, width):
    return 1 / (1 + np.exp(-(np.asarray(t, float) - at) / width))


def _part(curves: dict, steps=STEPS, n_labels=L, burstiness=1) -> dict:
    return {"steps": list(steps), "curves": {k: [list(map(float, c)) for c in v] for k, v in curves.items()},
            "n_labels": n_labels, "burstiness": burstiness, "seconds": 0.0}


def _main(good: bool, seeds=4, learned=True, lead=None, slow_phase=None) -> dict:
    t = np.asarray(STEPS, float)
    curves = {k: [] for k in ("ic_accuracy", "ic2_accuracy", "iw_accuracy", "tila2", "ila1", "tla2", "cla",
                              "test_loss")}
    for s in range(seeds):
        jump = (1500 if good else 900) + 100 * s
        slow = 1 / L + (1 / N - 1 / L) * (1 - np.exp(-t / 150)) * (good if slow_phase is None else slow_phase)
        # 1/L → 1/N: the slow phase
        rise = _sigmoid(t, jump, 15 if good else 150)
        ic = slow + (0.99 - slow) * rise if learned else slow
        curves["ic_accuracy"].append(ic)
        curves["ic2_accuracy"].append(ic if good else 0.3 * ic)
        curves["iw_accuracy"].append(np.full_like(t, 1 / L))
        shift = (-150 if good else 150) if lead is None else -lead  # TILA2's jump before (good) or after the IC jump
        even = 1 / 17 + (1 / N - 1 / 17) * (1 - np.exp(-t / 100))
        curves["tila2"].append(even + (0.95 - even) * _sigmoid(t, jump + shift, 15) if learned else even)
        for m in ("ila1", "tla2", "cla"):
            curves[m].append(0.1 + 0.8 * _sigmoid(t, jump - 50, 20))
        loss = math.log(L) - (math.log(L) - math.log(N)) * (1 - np.exp(-t / 150))
        curves["test_loss"].append(loss - (loss - 0.05) * rise if learned else loss)
    return _part(curves)


def _control(good: bool) -> dict:
    part = _main(not good)
    if good:  # stays at picking among the N = L labels
        part["curves"]["ic_accuracy"] = [[1 / N] * len(STEPS) for _ in range(4)]
    part["n_labels"] = N
    return part


def _sweep_part(ic: float, iw: float, seeds=4, steps=None, converged=True) -> dict:
    steps = steps or list(range(250, 3001, 250))
    t = np.asarray(steps, float)
    loss = 0.2 + (0.0 if converged else 2.0) * (1 - t / t[-1])
    return _part({"ic_accuracy": [[1 / L] * (len(t) - 1) + [ic]] * seeds,
                  "iw_accuracy": [[1 / L] * (len(t) - 1) + [iw]] * seeds,
                  "test_loss": [list(loss)] * seeds}, steps=steps)


def _grid(values, seeds, ic, iw, converged=True, loss=0.2):
    steps = list(range(250, 2001, 250))
    t = np.asarray(steps, float)
    curve = loss + (0.0 if converged else 2.0) * (1 - t / t[-1])
    return {"values": list(values), "ic": [[a] * seeds for a in ic], "iw": [[w] * seeds for w in iw],
            "ic_base": [[a] * seeds for a in ic], "iw_base": [[w] * seeds for w in iw],
            "ic_half_step": [[1000.0] * seeds for _ in values], "steps": steps,
            "test_loss": [list(curve)] * (len(values) * seeds)}


def _pheno(ratio_ok=True) -> dict:
    t = np.linspace(0, 200, 401)
    loss = math.log(L) - (math.log(L) - 0.01) * _sigmoid(t, 92, 2 if ratio_ok else 30)
    flow = lambda ls, labels, params: {"time": t.tolist(), "loss": list(ls), "accuracy": list(np.exp(-ls)),  # noqa
                                       "params": params, "n_labels": labels}
    old_loss = math.log(L) - (math.log(L) - 0.01) * _sigmoid(t, 40, 3)
    return {"flows": {"l_gt_n": flow(loss, L, [[0.0, 0.0, 0.0]] * len(t)),
                      "l_eq_n": flow(np.full_like(t, math.log(N)), N, [[0.0, 0.0, 0.0]] * len(t)),
                      "l_gt_n_sigma_beta": flow(old_loss, L, [[0.0, 0.0, 0.0]] * len(t))},
            "gradient_origin_eq": [0.0, 0.0, 0.0], "gradient_origin_gt": [0.0, 0.0, -0.02]}


def results(good: bool = True, converged: bool = True) -> dict:
    """A full results dict shaped like run()'s; good: every finding's data pass."""
    bs = CFG.burst_values
    ic_b = [0.05, 0.5, 0.8, 0.95] if good else [0.05, 0.05, 0.05, 0.05]
    iw_b = [0.9, 0.6, 0.3, 0.1] if good else [0.3, 0.3, 0.3, 0.3]
    burst = [_sweep_part(a, w, converged=converged) | {"burstiness": b} for b, a, w in zip(bs, ic_b, iw_b)]
    eps_ic = [0.4, 0.6, 0.8, 0.85, 0.3] if good else [0.8, 0.6, 0.4, 0.3, 0.1]
    alpha_ic, alpha_iw = ([0.9, 0.8, 0.7, 0.2], [0.1, 0.4, 0.7, 0.9]) if good else ([0.9, 0.8, 0.3, 0.2],
                                                                                  [0.1, 0.2, 0.3, 0.9])
    k_small = [0.05, 0.3, 0.5, 0.7] if good else [0.05, 0.5, 0.8, 0.95]
    phase = {"classes": {"n_classes": CFG.phase_classes, "burstiness": list(bs), "ic": [[a] * 4 for a in k_small],
                         "iw": [[0.3] * 4 for _ in bs], "steps": list(range(250, 2001, 250)),
                         "test_loss": [[[0.2] * 8] * 4 for _ in bs]},
             "eps": _grid(CFG.phase_eps, 4, eps_ic, [0.1] * 5, converged=converged),
             "zipf_alpha": _grid(CFG.phase_alpha, 4, alpha_ic, alpha_iw, converged=converged)}
    return {"main": _main(good), "control": _control(good), "burst": burst, "phase": phase,
            "phenomenology": _pheno(good)}


def null_results() -> dict:
    """Untrained models: one evaluation at step 0, every accuracy at chance, every loss at log L."""
    r = results(good=True)

    def at_init(part, value_of_metric):
        part["steps"] = [0]
        part["curves"] = {k: [[value_of_metric(k)] for _ in v] for k, v in part["curves"].items()}
        return part

    init = lambda k: math.log(L) if k == "test_loss" else (1 / 17 if k == "tila2" else 1 / L)  # noqa: E731
    r["main"], r["control"] = at_init(r["main"], init), at_init(r["control"], init)
    r["burst"] = [at_init(p, init) for p in r["burst"]]
    rng = np.random.default_rng(0)
    for key in ("eps", "zipf_alpha"):
        g = r["phase"][key]
        for k in ("ic", "iw", "ic_base", "iw_base"):
            g[k] = (1 / L + 0.005 * rng.standard_normal(np.shape(g[k]))).tolist()  # noise only
        g["steps"], g["test_loss"] = [0], [[math.log(L)] for _ in g["test_loss"]]
    cl = r["phase"]["classes"]
    cl["ic"] = (1 / L + 0.005 * rng.standard_normal(np.shape(cl["ic"]))).tolist()
    cl["steps"], cl["test_loss"] = [0], [[[math.log(L)]] * 4 for _ in cl["test_loss"]]
    return r


def _rows(r):
    return s4.claims(CFG, r)


# ---- passing, failing and null cases, every finding ----------------------------------------------------------------
def test_every_finding_passes_on_good_results():
    rows = _rows(results(good=True))
    for id in FINDINGS:
        assert value_of(rows, id).verdict == "PASS", (id, value_of(rows, id).reason)
    assert {r.kind for r in rows if r.id.startswith("pheno")} == {"check"}


def test_every_finding_fails_on_bad_results():
    rows = _rows(results(good=False))
    for id in FINDINGS:
        if id == "plateau":  # a slow, wide rise passes 1/N on its way: its failing case is the next test
            continue
        assert value_of(rows, id).verdict == "FAIL", (id, value_of(rows, id).detail)


def test_a_plateau_at_chance_is_no_slow_phase():
    r = results(good=True)
    r["main"] = _main(True, slow_phase=False)  # stays at 1/L until an abrupt jump
    row = value_of(_rows(r), "plateau")
    assert row.verdict == "FAIL" and value_of(_rows(r), "abrupt").verdict == "PASS"


def test_every_finding_fails_on_the_null():
    rows = _rows(null_results())
    for id in FINDINGS:
        assert value_of(rows, id).verdict in ("FAIL", "NOT RUN"), (id, value_of(rows, id).measured)


def test_a_seed_that_never_learned_counts_against():
    r = results(good=True)
    stuck = _main(True, learned=False)
    for k, v in stuck["curves"].items():  # seeds 2 and 3 stay on the plateau
        r["main"]["curves"][k][2:] = v[2:]
    rows = _rows(r)
    for id in ("abrupt", "plateau", "tila2-leads", "ic2", "l-eq-n"):
        row = value_of(rows, id)
        assert row.verdict == "FAIL" and "2 of 4 seeds learned" in row.reason, id


def test_the_l_eq_n_control_is_in_the_detail_of_the_learning_findings():
    rows = _rows(results(good=True))
    for id in ("abrupt", "plateau", "ic2"):
        assert "L = N control" in value_of(rows, id).detail


def test_end_of_sweep_findings_are_inconclusive_when_not_converged():
    rows = _rows(results(good=True, converged=False))
    for id in ("ic-rises-with-b", "iw-falls-with-b", "ic-rises-with-eps", "zipf-coexist"):
        row = value_of(rows, id)
        assert row.verdict == "INCONCLUSIVE" and "did not converge" in row.reason and "--set" in row.reason, id


def test_a_monotone_trend_without_the_minimum_effect_fails():
    r = results(good=True)
    for p, a in zip(r["burst"], [0.03, 0.031, 0.032, 0.033]):  # ρ = 1, but a rise of 0.003
        p["curves"]["ic_accuracy"] = [[a]] * 4
    row = value_of(_rows(r), "ic-rises-with-b")
    assert row.measured == pytest.approx(1.0) and row.verdict == "FAIL" and "minus B = 0" in row.reason


def test_one_adjacent_swap_among_four_points_is_rho_0_8_exactly():
    assert claims_sweeps.spearman([0, 1, 2, 4], [0.037, 0.030, 0.966, 0.979]) == 0.8  # passes ≥ 0.8
    assert claims_sweeps.spearman([0, 1, 2, 4], [0.1, 0.1, 0.1, 0.1]) == 0.0


def test_zipf_coexistence_needs_the_trade_off_at_the_extremes():
    r = results(good=True)
    g = r["phase"]["zipf_alpha"]
    g["ic"], g["iw"] = [[0.9] * 4] * 4, [[0.9] * 4] * 4  # both high everywhere: no trade-off
    row = value_of(_rows(r), "zipf-coexist")
    assert row.verdict == "FAIL" and "trade-off at the extremes" in row.reason


# ---- definition changes --------------------------------------------------------------------------------------------
def test_abruptness_records_the_verdict_under_50_step_sampling():
    row = value_of(_rows(results(good=True)), "abrupt")
    change = next(c for c in row.changes if "every 50" in c.what)
    assert change.old_verdict == "PASS" and change.old_value is not None
    # Coarse samples widen a 15-step-wide cliff: the 50-step value is larger than the 10-step one.
    assert change.old_value > row.measured


def test_progress_measure_records_the_old_any_of_three_rule():
    r = results(good=True)
    r["main"]["curves"]["tila2"] = _main(True, lead=-150)["curves"]["tila2"]  # TILA2 jumps after the IC jump
    row = value_of(_rows(r), "tila2-leads")
    change = next(c for c in row.changes if "any of ILA1" in c.what)
    # The old rule passes (ILA1, TLA2, CLA move before the jump) although TILA2 lags: it was near-automatic.
    assert row.verdict == "FAIL" and change.old_verdict == "PASS" and change.old_value == 1.0


def test_eps_row_records_its_verdict_over_every_eps():
    row = value_of(_rows(results(good=True)), "ic-rises-with-eps")
    bound = next(c for c in row.changes if "√(√D − 1)" in c.what)
    assert row.verdict == "PASS" and bound.old_verdict == "FAIL"  # the point beyond the bound (IC 0.3) breaks ρ
    assert bound.old_value == pytest.approx(claims_sweeps.spearman(CFG.phase_eps, [0.4, 0.6, 0.8, 0.85, 0.3]))


def test_phenomenology_rows_are_checks_with_the_sigma_beta_change():
    r = results(good=True)
    r["phenomenology"] = s4.phenomenology(CFG)
    rows = _rows(r)
    cliff, saddle = value_of(rows, "pheno-cliff"), value_of(rows, "pheno-saddle")
    assert cliff.kind == saddle.kind == "check"
    assert cliff.verdict == "PASS" and cliff.measured == pytest.approx(0.083, abs=0.01)
    (change,) = cliff.changes
    assert change.old_verdict == "FAIL" and change.old_value == pytest.approx(0.21, abs=0.02)
    assert saddle.verdict == "PASS" and saddle.measured == 0.0


# ---- configuration and helpers -------------------------------------------------------------------------------------
def test_cpu_preset_draws_varied_position_offsets():
    import jax

    for task in (CFG.task(), CFG.control_task(), CFG.burst_task(2)):
        assert task.max_pairs > task.n_pairs
        offsets = np.asarray(task.sample(jax.random.PRNGKey(0), 256).info["offset"])
        assert len(np.unique(offsets)) == 2 * (task.max_pairs - task.n_pairs) + 1  # every offset drawn


def test_first_step_at_tells_a_late_transition_from_none():
    steps = [10, 20, 30, 40]
    assert s4.first_step_at(steps, [0.1, 0.2, 0.6, 0.4], 0.5) == 30  # the first crossing, not the last
    assert s4.first_step_at(steps, [0.1, 0.5, 0.9, 1.0], 0.5) == 20  # reaching the level counts
    assert np.isnan(s4.first_step_at(steps, [0.1, 0.2, 0.3, 0.4], 0.5))


def test_bad_study_configs_name_the_field():
    with pytest.raises(ConfigError, match="burstiness"):
        s4.Config(burstiness=3)  # does not divide N = 8
