"""The in-context-language-learning study (S8): its claim logic on synthetic results (a pass, a fail and the null for
every finding) and a smoke run end to end."""

import math

import pytest

from mesalab.studies.in_context_language.claims import claims
from mesalab.studies.runner import run_study, study_config

GRID = (1000, 2500)
MODELS = ("transformer", "linear", "lstm", "ssm", "linear+ngram", "lstm+ngram")
BASELINES = {"2": {"accuracy": 0.78, "tvd": 0.40, "loss": 1.7}, "3": {"accuracy": 0.87, "tvd": 0.36, "loss": 1.6}}
LAYERS = {"transformer": [[0, "softmax"], [1, "softmax"]], "linear+ngram": [[1, "ngram1"], [2, "ngram2"]],
          "lstm+ngram": [[1, "ngram1"], [2, "ngram2"]]}


def results(acc, head=0.8, loss=1.0, converged=True, seeds=2):
    """Synthetic results: model m has accuracy acc[m] at every N and seed, TVD 1 − acc, TVD to the 3-gram
    1.2 − acc, the given loss (the transformer's) or 1.5; the transformer's best head scores `head`; every training
    curve flat over its last quarter (converged) or still falling there."""
    steps = list(range(0, 1001, 100))
    curve = [3.0, 2.0, 1.5, 1.2, 1.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0] if converged else [3.0] * 8 + [2.5, 2.0, 1.5]
    by_model = {}
    for m in MODELS:
        metrics = {"accuracy": acc[m], "tvd": 1 - acc[m], "tvd_3gram": 1.2 - acc[m], "l1": 2 - 2 * acc[m],
                   "loss": loss if m == "transformer" else 1.5}
        layers = LAYERS.get(m, [])
        scores = {str(n): [[head, 0.1] if kind == "softmax" else [1.0 if int(kind[5:]) + 1 == n else 0.3]
                           for _, kind in layers] for n in (2, 3, 4)}
        by_model[m] = {"metrics": {str(n): [dict(metrics)] * seeds for n in GRID},
                       "heads": {str(n): [{"layers": layers, "scores": scores}] * seeds for n in GRID},
                       "curves": {str(n): [curve] * seeds for n in GRID}}
    return {"grid": list(GRID), "models": list(MODELS), "seeds": seeds, "baselines": BASELINES, "steps": steps,
            "time": [float(s) for s in steps], "by_model": by_model,
            "params": {m: 110_000 if m != "ssm" else 120_000 for m in MODELS}}


@pytest.fixture(scope="module")
def cfg():
    return study_config("in-context-language-learning", "cpu")


def verdicts(cfg, r):
    return {row.id: row.verdict for row in claims(cfg, r)}


PAPER_LIKE = {"transformer": 0.90, "linear": 0.60, "lstm": 0.60, "ssm": 0.80, "linear+ngram": 0.85,
              "lstm+ngram": 0.85}


def test_the_papers_picture_passes_every_row(cfg):
    v = verdicts(cfg, results(PAPER_LIKE))
    assert v == {"transformer-best": "PASS", "reaches-3gram": "PASS", "ngram-heads": "PASS",
                 "closest-to-3gram": "PASS", "ngram-layers-help": "PASS", "3gram-beats-2gram": "PASS",
                 "ngram-layer-exact": "PASS", "comparable-params": "PASS"}


def test_each_finding_fails_when_its_statement_is_false(cfg):
    v = verdicts(cfg, results({**PAPER_LIKE, "ssm": 0.95}))      # an SSM above the transformer and the 3-gram
    assert v["transformer-best"] == v["reaches-3gram"] == v["closest-to-3gram"] == "FAIL"
    v = verdicts(cfg, results({**PAPER_LIKE, "transformer": 0.85}))  # below the 3-gram
    assert v["reaches-3gram"] == "FAIL" and v["transformer-best"] == "PASS"
    assert verdicts(cfg, results(PAPER_LIKE, head=0.3))["ngram-heads"] == "FAIL"
    assert verdicts(cfg, results({**PAPER_LIKE, "lstm+ngram": 0.55}))["ngram-layers-help"] == "FAIL"


def test_untrained_models_fail_every_finding(cfg):
    """The null: untrained models predict near-uniformly (loss ≈ log 20), with near-equal metrics and diffuse
    attention; the learned guard and the statistics both fail them."""
    r = results({m: 0.5 for m in MODELS}, head=0.1, loss=math.log(20))
    for rid, verdict in verdicts(cfg, r).items():
        if rid not in ("3gram-beats-2gram", "ngram-layer-exact", "comparable-params"):
            assert verdict == "FAIL", rid


def test_a_run_still_falling_is_inconclusive(cfg):
    v = verdicts(cfg, results(PAPER_LIKE, converged=False))
    assert v["transformer-best"] == v["ngram-heads"] == "INCONCLUSIVE"


def test_bad_config_values_name_their_key():
    from mesalab.config import ConfigError, override

    cpu = study_config("in-context-language-learning", "cpu")
    for key, value in (("models", ("transformer", "gru")), ("models", ("lstm",)), ("n_grid", (2500, 1000)),
                       ("eval_prompts", 10_000), ("d_attn", 63), ("max_len", -1)):
        with pytest.raises(ConfigError, match=key):
            override(cpu, **{key: value})


@pytest.mark.slow  # a whole-study run: CI's lowest-versions step leaves it out
def test_smoke_run_writes_rows_with_nulls(tmp_path):
    import json

    out = run_study("in-context-language-learning", "smoke", out=tmp_path / "s8", progress=False)
    rows = json.loads((out / "claims.json").read_text())["claims"]
    assert {"transformer-best", "ngram-heads", "ngram-layers-help", "ngram-layer-exact"} <= {r["id"] for r in rows}
    assert all(r["null_verdict"] in ("FAIL", "INCONCLUSIVE", "NOT RUN", None) for r in rows if r["kind"] == "finding")
    exact = next(r for r in rows if r["id"] == "ngram-layer-exact")
    assert exact["verdict"] == "PASS"
    for name in ("learning_curves.png", "ngram_heads.png", "training.png"):
        assert (out / "figures" / name).exists()
    assert (out / "report.html").exists()
