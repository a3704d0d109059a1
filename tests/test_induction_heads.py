"""The induction-heads study: its findings on synthetic results (a pass, a fail, the null), one smoke run whose every
finding fails on untrained models, and the copying task's BOS."""

import json

import jax
import numpy as np
import pytest

from mesalab.config import ConfigError
from mesalab.studies import induction_heads as s5
from mesalab.studies.runner import run_study
from mesalab.studies.verdicts import value_of
from mesalab.tasks import CopyingConfig

CFG = s5.PRESETS["smoke"]
STEPS = list(range(25, 2001, 25))


def jump(at: float, low: float, high: float, width: float = 50.0) -> list[float]:
    """A curve at `low` until `at`, then up to `high` within `width` steps."""
    return [low + (high - low) * float(np.clip((s - at) / width, 0, 1)) for s in STEPS]


def part(layers: int, acc, score, loss, prev=0.8, copying=0.6, eigen=0.4):
    seeds = len(acc)
    curves = {"accuracy": acc, "test_loss": [[v] * len(STEPS) for v in loss]}
    if layers == 2:
        curves |= {"prefix_matching_l2": score, "prefix_matching_l2_b3": score, "task_induction_l2": score,
                   "prev_token_l1": [[prev]] * seeds,
                   "copying_l2": [[copying]] * seeds, "ov_eigen_l2": [[eigen]] * seeds}
    return {"layers": layers, "steps": STEPS, "curves": curves}


def results(acc, score, loss, **kw):
    one = part(1, [[0.17] * len(STEPS)] * 4, None, [1.7] * 4)
    return {"two": part(2, acc, score, loss, **kw), "one": one}


def verdicts(r):
    return {c.id: c.verdict for c in s5.claims(CFG, r)}


def test_a_trained_induction_head_passes_every_finding():
    at = [800, 1000, 1200, 1400]
    r = results([jump(a, 1 / 6, 1.0) for a in at], [jump(a - 10, 0.05, 0.9) for a in at], [0.02] * 4)
    assert verdicts(r) == {"abrupt": "PASS", "circuit": "PASS", "coincide": "PASS", "accuracy": "PASS",
                           "copying": "PASS", "one_layer_control": "PASS"}


def test_findings_fail_where_the_paper_would_not_hold():
    at = [800, 1000, 1200, 1400]
    smooth = [[1 / 6 + 0.8 * s / 2000 for s in STEPS]] * 4                 # no plateau, no cliff
    late_score = [jump(1900, 0.05, 0.9)] * 4                                 # forms long after the accuracy jump
    r = results(smooth, late_score, [0.02] * 4, prev=0.3, copying=-0.5)
    v = verdicts(r)
    assert v["abrupt"] == "FAIL" and v["circuit"] == "FAIL" and v["copying"] == "FAIL" and v["coincide"] == "FAIL"
    # two of four seeds jump, two never leave the plateau: not a majority, and the stuck seeds are not dropped
    mixed = results([jump(a, 1 / 6, 1.0) for a in at[:2]] + [[1 / 6] * len(STEPS)] * 2,
                    [jump(a, 0.05, 0.9) for a in at], [0.02, 0.02, 1.4, 1.4])
    rows = s5.claims(CFG, mixed)
    assert value_of(rows, "abrupt").verdict == "FAIL" and "learned" in value_of(rows, "abrupt").reason
    assert value_of(rows, "accuracy").verdict == "FAIL"


def test_every_finding_fails_on_untrained_models():
    null = {"two": {"layers": 2, "steps": [0], "curves": {
        "accuracy": [[0.17]] * 4, "test_loss": [[2.8]] * 4, "prefix_matching_l2": [[0.08]] * 4,
        "task_induction_l2": [[0.1]] * 4, "prev_token_l1": [[0.12]] * 4, "copying_l2": [[-0.7]] * 4,
        "ov_eigen_l2": [[0.9]] * 4}},
        "one": {"layers": 1, "steps": [0], "curves": {"accuracy": [[0.17]] * 4, "test_loss": [[2.8]] * 4}}}
    rows = s5.claims(CFG, null)
    assert {r.verdict for r in rows if r.kind == "finding"} == {"FAIL"}
    # the old copying rule (OV eigenvalues > 0) passes untrained: it is listed as a definition change
    old = value_of(rows, "copying").changes[0]
    assert old.old_verdict == "PASS" and old.old_value == pytest.approx(0.9)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = run_study("induction-heads", "smoke", out=tmp_path_factory.mktemp("s5") / "run", progress=False)
    return out, json.loads((out / "claims.json").read_text())["claims"]


def test_smoke_run_judges_every_finding_against_its_null(smoke):
    out, claims = smoke
    findings = [c for c in claims if c["kind"] == "finding"]
    assert {c["id"] for c in findings} == {"abrupt", "circuit", "coincide", "copying"}
    assert {c["id"] for c in claims if c["kind"] == "check"} == {"accuracy", "one_layer_control"}
    assert {c["null_verdict"] for c in findings} <= {"FAIL", "INCONCLUSIVE"}
    results = json.loads((out / "results.json").read_text())
    assert set(results["two"]["curves"]) >= {"prefix_matching_l2", "task_induction_l2", "copying_l2", "ov_eigen_l2"}
    null = json.loads((out / "null_results.json").read_text())
    assert null["two"]["steps"] == [0]
    assert "Definition changes" in (out / "report.html").read_text()
    for name in ("training", "attention"):
        assert (out / "figures" / f"{name}.png").exists()


def test_bos_starts_every_copying_sequence():
    task = CopyingConfig(n_items=6, n_labels=4, n_pairs=3, bos=True)
    assert (task.vocab_size, task.seq_len, task.bos_id) == (11, 8, 10)
    tokens = np.asarray(task.sample(jax.random.PRNGKey(0), 16).info["tokens"])
    assert np.all(tokens[:, 0] == 10) and np.all(tokens[:, 1:] < 10)
    for block, repeats in ((3, 4), (4, 3), (6, 2)):
        ids, onehot = s5.olsson_sequences(CFG, block)
        assert onehot.shape[1] == 1 + block * repeats and np.all(np.asarray(ids[:, 0]) == 24)
        ids = np.asarray(ids)
        np.testing.assert_array_equal(ids[:, 1:1 + block], ids[:, 1 + block:1 + 2 * block])


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="repeat_blocks"):
        s5.Config(repeat_blocks=(7,))
