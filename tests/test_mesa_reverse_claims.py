"""The claim logic of mesa-reverse-engineering on synthetic results (no training): for every finding a passing case,
a failing case and the null (untrained models), the guards (learned, converged) and the definition changes."""

import copy
import importlib
from types import SimpleNamespace

import numpy as np
import pytest

# The module (the package's attribute `claims` is the function).
C = importlib.import_module("mesalab.studies.mesa_reverse.claims")

CFG = SimpleNamespace(d=4, seq_len=30)  # claims read d and seq_len only
T = CFG.seq_len - 1  # probe positions
SEEDS = 3
ZERO = 1.67
FINDINGS = ("probe-depth-s_next", "probe-context-s_next", "probe-depth-preconditioned",
            "probe-context-preconditioned", "compressed-4", "retrained-interpolation", "mesa-dataset-copy",
            "mesa-dataset-previous", "fewshot-eos", "fewshot-prefix")
END_OF_TRAINING = ("compressed-4", "retrained-interpolation", "fewshot-eos", "fewshot-prefix")


def probe_r2(levels, ramp=10.0):
    """[site, T]: each site's level, reached linearly over the first `ramp` positions."""
    t = np.arange(T)
    return (np.asarray(levels)[:, None] * np.minimum(1.0, (t + 1) / ramp)[None, :]).tolist()


def history(final, steps=(250, 500, 750, 1000), drop=0.0):
    """A loss history ending at `final` per seed; `drop`: the relative fall over the last quarter."""
    return {"steps": list(steps), "test_loss": [[2 * f, 1.5 * f, f * (1 + drop), f] for f in final]}


def deep_part(layers, loss, compressed, top=False):
    part = {"layers": layers, "params": 25_600 * layers + 400, "compressed_params": 128 * layers,
            "loss": list(loss), "compressed_loss": list(compressed),
            "probes": [{"s_next": probe_r2([0.0] + [0.9 * (i + 1) / layers for i in range(layers)]),
                        "preconditioned": probe_r2([0.1] + [0.2 + 0.7 * (i + 1) / layers for i in range(layers)]),
                        "s_t": probe_r2([1.0] * (layers + 1))} for _ in loss],
            "interpolation": [[x, x] for x in loss], "fewshot": [], "history": history(loss)}
    if top:
        part["fewshot"] = [{"plain": [1.0] * 8, "eos_untuned": [0.9] * 8, "eos": [0.5] * 8, "prefix": [0.4] * 8}
                           for _ in loss]
        part["fewshot_lsq"] = [0.2] * 8
        part["fewshot_zero"] = 1.7
        part["retrained"] = {**history([x * 1.02 for x in loss]), "loss": [x * 1.02 for x in loss]}
    return part


def trained():
    """Results that satisfy every finding and check."""
    return {
        "zero_loss": ZERO,
        "deep": [deep_part(2, [0.6] * SEEDS, [0.62] * SEEDS), deep_part(4, [0.3] * SEEDS, [0.31] * SEEDS, top=True)],
        "raw": {"model": "softmax-raw-2", "loss": [0.5] * SEEDS,
                "r2": [{"s_t-1": [0.0] + [0.97] * (T - 1), "s_t-2": [0.0] * 2 + [0.5] * (T - 2),
                        "s_t-3": [0.0] * 3 + [0.2] * (T - 3), "s_next": [0.3] * T} for _ in range(SEEDS)],
                "r2_embed": [{"s_t-1": [0.0] * T, "s_t-2": [0.0] * T, "s_t-3": [0.0] * T, "s_next": [0.0] * T}
                             for _ in range(SEEDS)],
                "sensitivity": [[1.0, 2.0, 0.05]] * SEEDS},
        "neumann": {"depths": [1, 4, 8, 12, 16, 24, 32, 48], "positions": [11, 50], "kappa": [500.0, 60.0],
                    "neumann": [[0.9, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]] * 2,
                    "newton": [[0.9, 0.5, 0.1, 1e-4, 1e-6, 1e-7, 1e-7, 1e-7]] * 2},
    }


def untrained():
    """The null: every model at initialisation, ≈ the zero predictor, one evaluation at step 0."""
    r = trained()
    for part in r["deep"]:
        n_sites = part["layers"] + 1
        part.update(loss=[ZERO] * SEEDS, compressed_loss=[ZERO] * SEEDS, history={"steps": [0], "test_loss": [
            [ZERO]] * SEEDS})
        # Every layer ≈ the embedding: the token alone (the preconditioned target still rises with context there).
        part["probes"] = [{"s_next": probe_r2([0.0] * n_sites), "preconditioned": probe_r2([0.6] * n_sites),
                           "s_t": probe_r2([1.0] * n_sites)} for _ in range(SEEDS)]
    top = r["deep"][-1]
    top["retrained"] = {"steps": [0], "test_loss": [[ZERO]] * SEEDS, "loss": [ZERO] * SEEDS}
    top["fewshot"] = [{"plain": [1.7] * 8, "eos_untuned": [1.7] * 8, "eos": [1.7] * 8, "prefix": [1.7] * 8}] * SEEDS
    r["raw"].update(loss=[ZERO] * SEEDS, sensitivity=[[1.0, 0.1, 0.1]] * SEEDS,
                    r2=[{k: [0.0] * T for k in ("s_t-1", "s_t-2", "s_t-3", "s_next")}] * SEEDS)
    return r


def rows(r):
    return {row.id: row for row in C.claims(CFG, r)}


def test_trained_results_pass_every_row():
    out = rows(trained())
    assert set(FINDINGS) <= set(out) and {"compressed-share-4", "neumann-depth"} <= set(out)
    bad = {k: (r.verdict, r.reason) for k, r in out.items() if r.verdict != "PASS"}
    assert not bad
    assert all(out[k].kind == "finding" and out[k].null for k in FINDINGS)
    assert out["neumann-depth"].kind == "check" and out["compressed-share-4"].kind == "check"


def test_every_finding_fails_on_the_null():
    out = rows(untrained())
    for k in FINDINGS:
        assert out[k].verdict in ("FAIL", "INCONCLUSIVE"), (k, out[k].verdict)
    # The guard is what fails them: e.g. compression is exact on two zero predictors.
    assert out["compressed-4"].guard_only and out["compressed-4"].unguarded == 0.0 and "learned" in out["compressed-4"].reason


def test_end_of_training_findings_need_convergence():
    r = trained()
    for part in r["deep"]:
        part["history"] = history(part["loss"], drop=0.05)  # still falling 5% over the last quarter
    out = rows(r)
    for k in END_OF_TRAINING:
        assert out[k].verdict == "INCONCLUSIVE" and "did not converge" in out[k].reason, k
    assert out["probe-depth-s_next"].verdict == "PASS"  # probes are not end-of-training findings


def test_depth_rule_needs_a_margin_and_no_fall():
    r = trained()
    for p in r["deep"][-1]["probes"]:  # last − first = +0.2, but layer 3 falls 0.1 below layer 2
        p["s_next"] = probe_r2([0.0, 0.5, 0.6, 0.5, 0.7])
    row = rows(r)["probe-depth-s_next"]
    assert row.verdict == "FAIL" and row.measured == pytest.approx(0.02 - 0.1)
    assert row.changes[0].old_verdict == "PASS"  # the old rule (last − first > 0) passed it
    for p in r["deep"][-1]["probes"]:  # monotone but only +0.03
        p["s_next"] = probe_r2([0.0, 0.80, 0.81, 0.82, 0.83])
    assert rows(r)["probe-depth-s_next"].verdict == "FAIL"
    margin, gain, fall = C.depth_rule(np.array([[0.1, 0.3, 0.29, 0.5]]))
    assert gain[0] == pytest.approx(0.4) and fall[0] == pytest.approx(0.01) and margin[0] == pytest.approx(0.01)


def test_seed_majority_decides():
    r = trained()
    r["deep"][-1]["probes"][0]["s_next"] = probe_r2([0.0] * 5)  # one seed of three shows no rise: still passes
    assert rows(r)["probe-depth-s_next"].verdict == "PASS"
    r["deep"][-1]["probes"][1]["s_next"] = probe_r2([0.0] * 5)
    assert rows(r)["probe-depth-s_next"].verdict == "FAIL"


def test_context_windows_and_their_definition_change():
    r = trained()
    out = rows(r)
    r2 = np.asarray(r["deep"][-1]["probes"][0]["preconditioned"])[-1]
    late = r2[CFG.seq_len // 2:].mean()
    lo, hi = C.precond_early(CFG.d)
    assert out["probe-context-preconditioned"].measured == pytest.approx(late - r2[lo:hi].mean())
    change = out["probe-context-preconditioned"].changes[0]  # the old window 1–5, on the same R² arrays
    assert change.old_value == pytest.approx(late - r2[1:6].mean()) and change.old_verdict == "PASS"
    s_next = out["probe-context-s_next"]
    r2 = np.asarray(r["deep"][-1]["probes"][0]["s_next"])[-1]
    assert s_next.measured == pytest.approx(r2[CFG.seq_len // 2:].mean() - r2[1:6].mean())
    assert s_next.changes[0].old_value == pytest.approx(r2[CFG.seq_len // 2:].mean() - r2[lo:hi].mean())
    # Flat in context: fails.
    for p in r["deep"][-1]["probes"]:
        p["preconditioned"] = probe_r2([0.1, 0.3, 0.5, 0.7, 0.9], ramp=1.0)
    assert rows(r)["probe-context-preconditioned"].verdict == "FAIL"


def test_compression_and_the_retrained_interpolation():
    r = trained()
    r["deep"][-1]["compressed_loss"] = [0.33] * SEEDS  # +10%
    r["deep"][-1]["retrained"]["loss"] = [0.36] * SEEDS  # +20%
    out = rows(r)
    assert out["compressed-4"].verdict == "FAIL" and out["compressed-4"].measured == pytest.approx(0.1)
    assert out["retrained-interpolation"].verdict == "FAIL"
    r["deep"][-1]["retrained"]["loss"] = [0.25] * SEEDS  # better than trained: passes (one-sided)
    assert rows(r)["retrained-interpolation"].verdict == "PASS"
    r["deep"][-1]["compressed_params"] = 100_000
    assert rows(r)["compressed-share-4"].verdict == "FAIL"


def test_compression_is_not_run_without_a_deep_enough_stack():
    r = trained()
    r["deep"] = r["deep"][:1]
    r["deep"][0].update({k: v for k, v in deep_part(2, [0.6] * SEEDS, [0.6] * SEEDS, top=True).items()
                         if k in ("fewshot", "fewshot_lsq", "fewshot_zero", "retrained")})
    out = rows(r)
    assert out["compressed"].verdict == "NOT RUN" and out["compressed-share"].verdict == "NOT RUN"


def test_mesa_dataset():
    r = trained()
    r["raw"]["r2"] = [{**s, "s_t-1": [0.0] + [0.8] * (T - 1)} for s in r["raw"]["r2"]]
    r["raw"]["sensitivity"] = [[1.0, 0.3, 0.1]] * SEEDS  # previous only 3× an older token
    out = rows(r)
    assert out["mesa-dataset-copy"].verdict == "FAIL" and out["mesa-dataset-copy"].measured == pytest.approx(0.8)
    assert out["mesa-dataset-previous"].verdict == "FAIL" and out["mesa-dataset-previous"].measured == pytest.approx(3)
    assert rows(trained())["mesa-dataset-previous"].measured == pytest.approx(40)


def test_neumann_check():
    n = trained()["neumann"]
    assert C.neumann_row(n).measured == pytest.approx(12 / 49)  # term by term never reaches 1e-3: depth > 48
    slow = {**n, "newton": [[0.9, 0.5, 0.1, 0.01, 0.005, 1e-4, 1e-6, 1e-7]] * 2}
    assert C.neumann_row(slow).verdict == "FAIL"  # 24 of > 48 layers
    never = {**n, "newton": [[0.9] * 8] * 2}
    assert C.neumann_row(never).verdict == "FAIL" and np.isnan(C.neumann_row(never).measured)


def test_fewshot_gap_closed_and_its_old_definition():
    r = trained()
    out = rows(r)
    assert out["fewshot-eos"].measured == pytest.approx((1.0 - 0.5) / (1.0 - 0.2))
    assert out["fewshot-prefix"].measured == pytest.approx((1.0 - 0.4) / (1.0 - 0.2))
    assert "Confound" in out["fewshot-eos"].detail and "0.12" in out["fewshot-eos"].detail  # untuned: 0.1 / 0.8
    for f in r["deep"][-1]["fewshot"]:
        f["eos"], f["prefix"] = [0.8] * 8, [0.95] * 8  # better than plain, but a quarter of the gap or less
    out = rows(r)
    assert out["fewshot-eos"].verdict == "FAIL" and out["fewshot-prefix"].verdict == "FAIL"
    assert out["fewshot-eos"].changes[0].old_verdict == "PASS"  # "EOS < plain" alone passed
    r["deep"][-1]["fewshot_lsq"] = [1.5] * 8  # least squares worse than plain: the gap is undefined
    assert rows(r)["fewshot-eos"].verdict == "FAIL"


def test_claims_survive_nan_and_untrained_shapes():
    r = untrained()
    r["deep"][-1]["loss"] = [np.nan] * SEEDS
    r["raw"]["sensitivity"] = [[np.nan] * 3] * SEEDS
    out = rows(copy.deepcopy(r))
    assert all(out[k].verdict != "PASS" for k in FINDINGS)
