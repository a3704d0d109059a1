"""The repeated-data study (S9a): its data, its claim logic on synthetic results (a pass, a fail, the null, an
unconverged run) and a smoke run end to end."""

import json
import math

import jax
import numpy as np
import pytest

from mesalab.config import ConfigError, override
from mesalab.studies.repeated_data.claims import claims, rise
from mesalab.studies.repeated_data.config import PRESETS, subset_size, task_of
from mesalab.studies.repeated_data.task import subset_sequences
from mesalab.studies.runner import run_study, study_config

GRID = (1, 4, 16, 64, 256)
STEPS = list(range(0, 3001, 100))


def curve(end, bump=0.0, converged=True):
    """A unique-loss curve from 4.2 down to `end` (flat over the last third when converged), with a mid-training
    rise of `bump` centred at step 1500."""
    s = np.asarray(STEPS, float)
    c = end + (4.2 - end) * np.exp(-s / (300 if converged else 3000))
    return (c + bump * np.exp(-((s - 1500) / 300) ** 2)).tolist()


def results(loss, pm, cp, copy1=0.5, bumps=None, converged=True, seeds=2, parts=("attention-only", "mlp")):
    """Synthetic results: final unique loss, prefix-matching and copying score per r (same for every seed)."""
    bumps = bumps or {}
    part = {"steps": STEPS, "time": [float(s) for s in STEPS], "seconds": 1.0, "curves": {
        "unique_loss": {str(r): [curve(loss[i], bumps.get(r, 0.0), converged)] * seeds for i, r in enumerate(GRID)},
        "subset_loss": {str(r): [curve(loss[i] - 0.1 * i)] * seeds for i, r in enumerate(GRID)},
        "copy_loss": {str(r): [[4.0, copy1]] * seeds for r in GRID},
        "prefix_matching": {str(r): [[0.0, pm[i]]] * seeds for i, r in enumerate(GRID)},
        "copying": {str(r): [[0.0, cp[i]]] * seeds for i, r in enumerate(GRID)}}}
    return {"repeats": list(GRID), "subset_sizes": [0, 1, 2, 3, 4], "parts": {p: part for p in parts}}


@pytest.fixture(scope="module")
def cfg():
    return study_config("repeated-data", "cpu")


def verdicts(cfg, r):
    return {row.id: row.verdict for row in claims(cfg, r)}


PEAKED = {"loss": [3.0, 3.05, 3.2, 3.1, 3.02], "pm": [0.6, 0.55, 0.3, 0.4, 0.58], "cp": [0.8, 0.8, 0.5, 0.6, 0.8]}


def test_a_damaging_middle_r_passes_every_finding(cfg):
    rows = {row.id: row for row in claims(cfg, results(**PEAKED, bumps={16: 0.2}))}
    assert {k: v.verdict for k, v in rows.items()} == dict.fromkeys(
        ["peak", "damage-induction", "damage-copying", "rise", "peak-mlp", "damage-induction-mlp",
         "damage-copying-mlp", "rise-mlp"], "PASS")
    assert rows["peak"].measured == pytest.approx((3.2 - 3.02) / 3.0, rel=1e-3)
    assert rows["damage-induction"].measured == pytest.approx(0.3 - 0.6)
    assert "r* = 16" in rows["damage-copying"].claim


def test_monotone_harm_or_no_harm_fails(cfg):
    """No interior peak (loss grows with r), scores untouched, no rise beyond r = 1's own."""
    v = verdicts(cfg, results(loss=[3.0, 3.01, 3.02, 3.03, 3.3], pm=[0.6] * 5, cp=[0.8] * 5, bumps={1: 0.2, 16: 0.2}))
    for rid in ("peak", "damage-induction", "damage-copying", "rise"):
        assert v[rid] == "FAIL" and v[rid + "-mlp"] == "FAIL", rid


def test_the_null_untrained_models_fail(cfg):
    """Untrained models: one evaluation, identical at every r, no copying learned."""
    r = results(loss=[4.17] * 5, pm=[0.1] * 5, cp=[-0.9] * 5, copy1=math.log(65))
    for part in r["parts"].values():
        part["steps"], part["time"] = [0], [0.0]
        for m in part["curves"].values():
            for key in m:
                m[key] = [[c[-1]] for c in m[key]]
    assert set(verdicts(cfg, r).values()) == {"FAIL"}


def test_unlearned_copying_fails_and_unconverged_is_inconclusive(cfg):
    assert verdicts(cfg, results(**PEAKED, copy1=3.0))["damage-induction"] == "FAIL"
    v = verdicts(cfg, results(**PEAKED, converged=False))
    assert v["peak"] == v["damage-copying"] == "INCONCLUSIVE"


def test_a_part_not_trained_is_not_run(cfg):
    v = verdicts(cfg, results(**PEAKED, parts=("attention-only",)))
    assert v["peak"] == "PASS" and v["rise-mlp"] == "NOT RUN"


def test_rise_is_sustained_not_one_evaluation():
    assert rise([3.0, 2.0, 2.0, 3.0, 3.0, 3.0, 1.0, 1.0]) == pytest.approx(3.0 - 7 / 3)   # on the 3-point average
    assert rise([3.0, 2.0, 5.0, 1.0, 1.0, 1.0]) == 0.0      # one high evaluation is not "a while"
    assert rise(np.linspace(3, 1, 10)) == 0.0 and rise([3.0, 2.0]) == 0.0


def test_data_copies_the_span_and_repeats_the_subset(cfg):
    task = task_of(cfg, 256)
    draw = jax.jit(lambda t, key: t.sample(key, 40))   # one program for every r: subset_size is a dynamic field
    batch = draw(task, jax.random.PRNGKey(0))
    tokens, copyable = np.asarray(batch.info["tokens"]), np.asarray(batch.info["copyable"])
    targets = np.asarray(batch.targets).argmax(-1)
    assert (tokens[:, 0] == task.bos_id).all() and (copyable.sum(1) == cfg.span - 1).all()
    for row in range(40):  # every copyable target also follows its predecessor earlier in the sequence
        for t in np.flatnonzero(copyable[row]):
            earlier = [j for j in range(t - 1) if tokens[row, j] == tokens[row, t]]
            assert any(tokens[row, j + 1] == targets[row, t] for j in earlier)
    k = task.repeated_rows(40)
    assert k == 4 and np.asarray(batch.info["repeated"]).sum() == k
    subset = np.asarray(jax.jit(subset_sequences)(task, np.arange(int(task.subset_size))).info["tokens"])
    assert all((subset == tokens[i]).all(axis=1).any() for i in range(k))       # subset rows come from the subset
    fresh = np.asarray(draw(task_of(cfg, 1), jax.random.PRNGKey(0)).info["tokens"])[:k]
    assert not any((subset == row).all(axis=1).any() for row in fresh)          # r = 1: no subset at all
    assert subset_size(cfg, 1) == 0 and subset_size(cfg, 4) == round(3 * cfg.steps / 4)


def test_bad_config_values_name_the_key():
    with pytest.raises(ConfigError, match="repeats"):
        override(PRESETS["cpu"], repeats=(4, 16, 64))
    with pytest.raises(ConfigError, match="parts"):
        override(PRESETS["cpu"], parts=("mlp", "bogus"))
    with pytest.raises(ConfigError, match="seq_len"):
        override(PRESETS["cpu"], seq_len=10)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_study("repeated-data", "smoke", out=tmp_path_factory.mktemp("runs") / "repeated-data", progress=False)


@pytest.mark.slow
def test_smoke_run_writes_rows_figures_and_nulls_that_do_not_pass(smoke):
    rows = json.loads((smoke / "claims.json").read_text())["claims"]
    assert {r["id"] for r in rows} >= {"peak", "damage-induction", "damage-copying", "rise", "peak-mlp"}
    for r in rows:
        if r["kind"] == "finding":
            assert r["null_verdict"] in ("FAIL", "INCONCLUSIVE", "NOT RUN"), r["id"]
    assert (smoke / "figures" / "sweep.png").exists() and (smoke / "figures" / "curves.png").exists()
