"""The language-modelling study (S10): its claim logic on synthetic results (pass, fail and the null for every
finding), its measures, its config and parameter matching, and a smoke run end to end."""

import json

import jax
import numpy as np
import pytest

from mesalab.config import ConfigError, override
from mesalab.studies.language_modelling import measures
from mesalab.studies.language_modelling.claims import claims
from mesalab.studies.language_modelling.config import PRESETS, Config, model_of, param_count
from mesalab.studies.runner import run_study
from mesalab.tasks.corpus import decode

SEEDS = 3
UNIGRAM = 3.27
LAYERS = {"softmax": ["softmax"] * 2, "linear": ["linear"] * 2, "hybrid": ["softmax", "mesa"],
          "softmax+ngram": ["softmax", "ngram1", "ngram2", "ngram3", "softmax"]}


def results(loss, icl, *, alive=True):
    """Synthetic results: per model, each seed's validation loss and ICL score; flat curves; equal parameters."""
    models = {}
    for name in LAYERS:
        models[name] = {
            "layers": LAYERS[name], "d_model": 64, "params": 140_000 if "ngram" not in name else 136_000,
            "val_loss": list(loss[name]), "icl_score": list(icl[name]), "position_loss": [[2.0] * 8] * SEEDS,
            "curve": {"steps": [16, 32, 48, 64, 80], "time": [16.0, 32, 48, 64, 80],
                      "values": [[5.0, 3.0, 2.5, 2.3, 2.2]] * SEEDS},
            "tokens_per_s": 1000.0, "ridge": [[[1.0] * 4]] * SEEDS if "mesa" in LAYERS[name] else [],
            "alive": [alive] * SEEDS}
    return {"unigram_loss": UNIGRAM, "icl_positions": [13, 125], "tokens_per_step": 8192, "models": models}


def seeds(*values):
    return np.asarray(values, float)


BASE = seeds(2.00, 2.03, 1.97)
GOOD = results(
    loss={"softmax": BASE, "linear": BASE + 0.2, "hybrid": BASE + 0.01, "softmax+ngram": BASE - 0.15},
    icl={"softmax": seeds(-0.50, -0.52, -0.48), "linear": seeds(-0.3, -0.3, -0.3), "hybrid": seeds(-0.55, -0.6, -0.5),
         "softmax+ngram": seeds(-0.7, -0.72, -0.69)})


def rows_of(r):
    return {row.id: row for row in claims(PRESETS["cpu"], r)}


def test_ngram_gains_a_close_hybrid_and_more_icl_pass():
    rows = rows_of(GOOD)
    assert {k: v.verdict for k, v in rows.items()} == {
        "ngram-helps": "PASS", "hybrid-matches-softmax": "PASS", "icl-at-least-softmax": "PASS",
        "params-matched": "PASS"}
    assert rows["ngram-helps"].measured == pytest.approx(0.15)
    assert rows["hybrid-matches-softmax"].measured == pytest.approx(0.01 / 2.00, rel=1e-6)  # the worse of the best 2 of 3
    assert "more ICL than softmax" in rows["icl-at-least-softmax"].detail


def test_worse_models_fail():
    r = results(
        loss={"softmax": BASE, "linear": BASE, "hybrid": BASE * 1.1, "softmax+ngram": BASE + 0.05},
        icl={"softmax": seeds(-0.50, -0.52, -0.48), "linear": seeds(-0.5, -0.5, -0.5),
             "hybrid": seeds(-0.2, -0.25, -0.3), "softmax+ngram": seeds(-0.7, -0.7, -0.7)})
    rows = rows_of(r)
    assert rows["ngram-helps"].verdict == "FAIL"
    assert rows["hybrid-matches-softmax"].verdict == "FAIL"
    assert rows["icl-at-least-softmax"].verdict == "FAIL"          # the hybrid learns less in context
    assert "less ICL than softmax" in rows["icl-at-least-softmax"].detail


def test_a_gain_inside_the_seed_spread_fails():
    noisy = seeds(2.0, 2.3, 1.7)                                     # seed spread 0.3
    r = results(loss={**{k: noisy for k in LAYERS}, "softmax+ngram": noisy - 0.1},
                icl={k: seeds(-0.5, -0.5, -0.5) for k in LAYERS})
    assert rows_of(r)["ngram-helps"].verdict == "FAIL"


def test_untrained_and_unigram_like_models_fail_every_finding():
    """The null: untrained models sit at log 256; a unigram-like model at the unigram loss with no ICL. Both fail
    the learned guard, whatever their differences."""
    for level in (np.log(256), UNIGRAM):
        r = results(loss={"softmax": seeds(level, level + 1e-3, level), "linear": seeds(level, level, level),
                          "hybrid": seeds(level, level, level), "softmax+ngram": seeds(level - 0.01, level - 0.01,
                                                                                       level - 0.01)},
                    icl={k: seeds(-1e-3, 0, 1e-3) for k in LAYERS})
        rows = rows_of(r)
        for rid in ("ngram-helps", "hybrid-matches-softmax", "icl-at-least-softmax"):
            assert rows[rid].verdict == "FAIL", (level, rid)
    diverged = results(loss={k: BASE for k in LAYERS}, icl={k: seeds(-0.5, -0.5, -0.5) for k in LAYERS}, alive=False)
    assert rows_of(diverged)["hybrid-matches-softmax"].verdict == "FAIL"


def test_rows_without_their_models_are_not_run():
    r = GOOD | {"models": {k: v for k, v in GOOD["models"].items() if k in ("softmax", "linear")}}
    rows = rows_of(r)
    assert rows["ngram-helps"].verdict == rows["hybrid-matches-softmax"].verdict == "NOT RUN"
    assert rows["icl-at-least-softmax"].verdict == "NOT RUN"


def test_icl_positions_follow_olsson_and_the_score_is_late_minus_early():
    assert measures.icl_positions(512) == (50, 500)
    assert measures.icl_positions(128) == (13, 125)
    loss = np.linspace(3.0, 1.0, 128)                                # falls along the context: ICL
    assert measures.icl_score(loss, 128) == pytest.approx(loss[124] - loss[12]) and measures.icl_score(loss, 128) < 0


def test_unigram_loss_and_windows():
    train = np.asarray([65] * 99 + [66], np.uint8)
    tokens = measures.windows(np.asarray([65] * 50, np.uint8), 4, 8, seed=0)
    assert tokens.shape == (4, 9)
    assert measures.unigram_loss(train, tokens) == pytest.approx(-np.log(100 / 356))   # add-one over 256 bytes


def test_bytes_round_trip():
    text = "def f(x):\n    return 'é' + x  # ünïcode\n"
    assert decode(np.frombuffer(text.encode(), np.uint8)) == text


def test_position_losses_average_to_the_training_loss():
    import equinox as eqx

    from mesalab.models import Transformer
    from mesalab.train.loss import classification_loss

    cfg = override(PRESETS["smoke"], seq_len=8, d_model=8, models=("softmax",))
    pair = [Transformer(model_of(cfg, "softmax"), key=jax.random.PRNGKey(s)) for s in (0, 1)]
    arrays = [eqx.filter(m, eqx.is_array) for m in pair]
    models = eqx.combine(jax.tree_util.tree_map(lambda *a: np.stack(a), *arrays), pair[0])  # a leading member axis
    tokens = np.random.default_rng(0).integers(0, 256, (4, 9)).astype(np.uint8)
    pos = measures.position_losses(models, tokens)
    assert pos.shape == (2, 8)
    assert pos[1].mean() == pytest.approx(float(classification_loss(pair[1], measures.as_batch(tokens))), rel=1e-5)


def test_models_are_matched_in_parameters():
    cfg = PRESETS["cpu"]
    ref = param_count(model_of(cfg, "softmax"))
    for name in ("linear", "mesa", "hybrid", "softmax+ngram"):
        assert abs(param_count(model_of(cfg, name)) / ref - 1) <= 0.05, name
    assert model_of(cfg, "softmax+ngram").layer_kinds == ("softmax", "ngram1", "ngram2", "ngram3", "softmax")
    assert model_of(cfg, "hybrid").layer_kinds == ("softmax", "mesa")


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="Config.models"):
        Config(models=("softmax", "gpt"))
    with pytest.raises(ConfigError, match="Config.models"):
        Config(models=("linear",))
    with pytest.raises(ConfigError, match="Config.n_layers"):
        Config(n_layers=1, models=("softmax", "hybrid"))
    with pytest.raises(ConfigError, match="Config.mesa_method"):
        Config(mesa_method="fast")


@pytest.mark.slow  # a whole-study run: CI's lowest-versions step leaves it out
def test_smoke_run_writes_rows_with_nulls(tmp_path):
    out = run_study("language-modelling", "smoke", out=tmp_path / "s10", progress=False)
    rows = json.loads((out / "claims.json").read_text())["claims"]
    assert {r["id"] for r in rows} == {"ngram-helps", "hybrid-matches-softmax", "icl-at-least-softmax",
                                       "params-matched"}
    assert all(r["null_verdict"] in ("FAIL", "INCONCLUSIVE", "NOT RUN", None) for r in rows if r["kind"] == "finding")
    r = json.loads((out / "results.json").read_text())
    hybrid = r["models"]["hybrid+ngram"]
    assert np.asarray(hybrid["ridge"]).shape == (2, 1, 1) and hybrid["tokens_per_s"] > 0    # [seed, mesa layer, head]
    for f in ("loss.png", "icl.png", "speed.png", "../report.html"):
        assert (out / "figures" / f).exists()
