"""Study S7 attention-saes: the family rules on hand-built activations, the claim logic on synthetic results (pass,
fail and null for every finding), the config's errors, and one smoke run end to end (slow)."""

import json
import math

import numpy as np
import pytest

from mesalab.analysis.sae_io import hook_name_of, read_sae
from mesalab.config import ConfigError, override
from mesalab.studies.attention_saes import PRESETS, claims
from mesalab.studies.attention_saes import families as fam
from mesalab.studies.attention_saes.parts import chosen_member
from mesalab.studies.verdicts import attach_nulls, value_of

CFG = PRESETS["cpu"]
B, F = 40, 6


def hand_built():
    """Six features on B sequences: 0 induction, 1 previous-token, 2 label, 3 position, 4 other, 5 dead; 6 is
    feature 0's activation with the attribution of an untrained model (spread over all sources)."""
    rng = np.random.default_rng(0)
    match = rng.choice([1, 3], size=B)
    labels = fam.label_identity(rng.integers(0, 5, (B, 2)), rng.integers(0, 5, B))
    acts = np.zeros((B, 5, F + 1))
    dfa = np.zeros((B, 5, 5, F + 1))
    b = np.arange(B)
    acts[:, 4, 0] = 1.0
    dfa[b, 4, match, 0] = 1.0                      # the label after the query's earlier occurrence
    dfa[:, 4, 2, 0] = 0.1
    acts[:, 3, 1] = 1.0
    dfa[:, 3, 2, 1] = 1.0                          # q → q − 1
    acts[:, 2, 2] = labels[:, 2] + 0.01 * rng.random(B)  # the label identity predicts it
    dfa[:, 2, :3, 2] = 1.0
    acts[:, 1, 3] = 1.0 + rng.random(B)            # position 1 only, whatever the label
    dfa[:, 1, :2, 3] = 1.0
    acts[:, :, 4] = rng.random((B, 5))             # everywhere, no rule
    dfa[:, :, :, 4] = 1.0
    acts[:, 4, 6] = 1.0
    dfa[:, 4, :, 6] = 1.0                          # uniform over the five sources
    return acts, dfa, match, labels


def test_family_rules_on_hand_built_features():
    acts, dfa, match, labels = hand_built()
    stats = fam.feature_stats(acts, dfa, match, labels)
    family = fam.classify(stats)
    names = [fam.FAMILIES[i] if i >= 0 else "dead" for i in family]
    assert names == ["induction", "previous-token", "label", "position", "other", "dead", "position"]
    assert stats["induction"][0] == pytest.approx(1 / 1.1)
    assert stats["induction"][6] == pytest.approx(0.2)  # uniform attribution: far below the 0.75 rule
    # a fixed-position head (always source 3) has an induction share of ½ on average: not induction
    fixed = np.zeros_like(dfa)
    fixed[:, 4, 3, 0] = 1.0
    assert fam.classify(fam.feature_stats(acts, fixed, match, labels))[0] != 0


def test_head_summary_counts_single_head_and_polysemantic_heads():
    family = np.array([0, 0, 2, 3, 1, 4, -1])
    att = np.full((7, 4), 0.25)
    for f, h in [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2)]:
        att[f] = 0.0
        att[f, h] = 1.0
    out = fam.head_summary(family, att, marked=[1])
    assert out["n_live"] == 6 and out["single_head"] == pytest.approx(5 / 6)
    assert out["polysemantic"] == [1, 2] and out["mechanism_polysemantic"] == [1, 2]
    assert out["induction_marked"] == pytest.approx(1.0)
    assert out["family_share"]["induction"] == pytest.approx(2 / 6)
    assert math.isnan(fam.head_summary(np.array([2, 3]), att[:2], [1])["induction_marked"])


def test_the_chosen_sae_is_the_best_at_l0_at_most_20():
    assert chosen_member(np.array([50.0, 15, 8, 3]), np.array([0.99, 0.9, 0.95, 0.5])) == 2
    assert chosen_member(np.array([50.0, 30]), np.array([0.99, 0.9])) == 1  # none sparse enough: the sparsest


def layer_result(rec=0.9, single=0.7, mech=(1,), ind=0.2, marked_share=0.9, cost=0.5):
    return {"chosen": 0, "l0": [10.0], "loss_recovered": [rec], "explained_variance": [0.9], "ablation_cost": [cost],
            "members": [[0.1, 0.01, 0]], "random_decoder_recovered": -1.0, "random_decoder_single_head": 0.02,
            "single_head": single, "n_live": 100, "polysemantic": list(mech), "mechanism_polysemantic": list(mech),
            "family_share": {"induction": ind, "previous-token": 0.0, "label": 0.3, "position": 0.2, "other": 0.3},
            "induction_marked": marked_share}


def results(loss=0.05, phase=3000.0, onset_at=1, **kw):
    steps = [1500 * (i + 1) for i in range(8)]
    share = [0.0] * 8
    for i in range(onset_at, 8):
        share[i] = 0.3
    return {"base": {"test_loss": [[0.7, loss]] * 3, "phase": [phase] * 3, "steps": [0, 12000]},
            "heads": {"marked": [[1, 3]] * 3, "keep_one": [[0.5] * 8] * 3},
            "saes": {"1": [layer_result(**kw)] * 3},
            "timeline": {"steps": steps, "induction_share": [share] * 3}}


FINDINGS = ("ce-recovered", "single-head", "polysemantic", "induction-family", "induction-heads", "timeline")


def test_every_finding_passes_on_a_result_that_meets_it():
    rows = claims(CFG, results())
    assert {r.id: r.verdict for r in rows if r.kind == "finding"} == {**dict.fromkeys(FINDINGS, "PASS"),
                                                                      "ngram-family": "NOT RUN"}  # no S8 run
    assert value_of(rows, "random-decoder").verdict == "PASS"
    assert value_of(rows, "timeline").measured == pytest.approx(0.0)  # onset 3000 at the phase change 3000


@pytest.mark.parametrize("change, fails", [
    ({"rec": 0.7}, "ce-recovered"), ({"cost": 0.01}, "ce-recovered"), ({"single": 0.4}, "single-head"),
    ({"mech": ()}, "polysemantic"), ({"ind": 0.02}, "induction-family induction-heads"),  # no family: neither
    ({"marked_share": 0.5}, "induction-heads"),
    ({"onset_at": 0, "phase": 6000.0}, "timeline"),     # the family is there long before the phase change
    ({"onset_at": 7, "phase": 3000.0}, "timeline"),     # … or long after
    ({"phase": float("nan")}, "timeline"),
])
def test_each_finding_fails_where_its_statement_is_false(change, fails):
    rows = {r.id: r for r in claims(CFG, results(**change))}
    assert all(rows[k].verdict == "FAIL" for k in fails.split()), rows
    assert all(r.verdict == "PASS" for k, r in rows.items() if k in FINDINGS and k not in fails.split())


def test_induction_heads_cannot_pass_when_s6_marks_nearly_every_head():
    r = results()
    r["heads"]["marked"] = [list(range(8))] * 3   # chance share 1 ≥ 80%
    row = value_of(claims(CFG, r), "induction-heads")
    assert row.verdict == "INCONCLUSIVE" and "chance" in row.reason
    assert row.changes and row.changes[0].old_verdict == "PASS"  # the first cpu run's definition, listed


def test_untrained_models_fail_every_finding_and_the_runner_marks_it():
    # the null: no phase change, loss at chance, ablation costs nothing, no induction family, multi-head features
    null = results(loss=0.69, phase=float("nan"), onset_at=8, rec=1.0, cost=0.001, single=0.2, mech=(), ind=0.0,
                   marked_share=float("nan"))
    null_rows = claims(CFG, null)
    assert all(r.verdict == "FAIL" for r in null_rows if r.id in FINDINGS)
    assert value_of(null_rows, "random-decoder").verdict == "NOT RUN"  # no ratio to take
    # a statistic that passes on its null is caught by the runner (here: the learned guard alone fails the null)
    rows = attach_nulls(claims(CFG, results()), claims(CFG, results(loss=0.69)))
    assert all(r.verdict == "PASS" and r.null_verdict == "FAIL" for r in rows if r.id in FINDINGS)
    assert "learned guard" in value_of(rows, "single-head").null


def test_timeline_is_not_run_without_checkpoints():
    r = results()
    del r["timeline"]
    assert value_of(claims(CFG, r), "timeline").verdict == "NOT RUN"


@pytest.mark.parametrize("key, value", [("layer", 2), ("layers", (2,)), ("timeline_every", 300), ("l1_scales", ()),
                                        ("d_head", 7), ("sae_batch", 0)])
def test_bad_config_names_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        override(PRESETS["cpu"], **{"layers": (1,), key: value} if key == "layer" else {key: value})


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    from mesalab.studies.runner import run_study
    tmp = tmp_path_factory.mktemp("s7")
    # with an S8 smoke model (its transformer alone, seconds), so the ngram-family part runs end to end
    s8 = run_study("in-context-language-learning", "smoke", sets=["models=transformer"], out=tmp / "s8",
                   progress=False)
    return run_study("attention-saes", "smoke", sets=[f"s8_from_run={s8}"], out=tmp / "run", progress=False)


@pytest.mark.slow
def test_smoke_run_writes_everything_and_no_null_passes(smoke):
    rows = json.loads((smoke / "claims.json").read_text())["claims"]
    assert {r["id"] for r in rows if r["kind"] == "finding"} == {*FINDINGS, "ngram-family"}
    assert all(r["null_verdict"] in ("FAIL", "INCONCLUSIVE", "NOT RUN") for r in rows if r["kind"] == "finding")
    assert {f["file"] for f in json.loads((smoke / "figures.json").read_text())} >= {
        "pareto.png", "head_attribution.png", "families_per_head.png", "timeline.png", "s8_model.png"}
    folders = sorted((smoke / "saes").glob("model*-layer1/l1_*"))
    assert len(folders) == 2 * len(PRESETS["smoke"].l1_scales) * PRESETS["smoke"].sae_seeds
    sae, cfg = read_sae(folders[0])  # SAELens's layout, read without SAELens
    assert hook_name_of(cfg) == "blocks.1.attn.hook_z" and cfg["reshape_activations"] == "hook_z"
    assert sae.W_dec.shape == (cfg["d_sae"], cfg["d_in"])
    np.testing.assert_allclose(np.linalg.norm(np.asarray(sae.W_dec), axis=1), 1.0, rtol=1e-5)
    results = json.loads((smoke / "results.json").read_text())
    assert len(results["timeline"]["steps"]) == 3 and len(results["saes"]["1"]) == 2
    ngram_row = next(r for r in rows if r["id"] == "ngram-family")
    assert ngram_row["verdict"] != "NOT RUN" and ngram_row["null_verdict"] in ("FAIL", "INCONCLUSIVE")
    per = results["s8"]["per_seed"]
    assert len(per) == 1 and per[0]["layer"] == 0 and len(per[0]["head_score"]) == 2


def test_from_run_must_be_an_induction_circuits_run(tmp_path):
    from mesalab.studies.attention_saes.parts import with_run_keys
    with pytest.raises(ConfigError, match="from_run"):
        with_run_keys(override(PRESETS["smoke"], from_run=str(tmp_path / "nowhere")))
    (tmp_path / "run.json").write_text(json.dumps({"study": "gd-equivalence"}))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="induction-circuits"):
        with_run_keys(override(PRESETS["smoke"], from_run=str(tmp_path)))


def test_cli_from_names_what_it_needs(tmp_path):
    from typer.testing import CliRunner

    from mesalab.cli import app

    runner = CliRunner(env={"COLUMNS": "300"})
    res = runner.invoke(app, ["run", "gd-equivalence", "--scale", "smoke", "--from", str(tmp_path)])
    assert res.exit_code == 2 and "has no from_run key" in " ".join(res.output.split())
    res = runner.invoke(app, ["run", "attention-saes", "--scale", "smoke", "--from", str(tmp_path / "missing"),
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "Config.from_run = " in " ".join(res.output.split())
    assert not (tmp_path / "out" / "run.json").exists()


# ---- the S8 model: the n-gram-continuation rule and the ngram-family row ----------------------------------------


def test_ngram_rule_on_hand_built_features():
    """One prompt: feature 0 fires where the last token recurred and attributes to the token after its earlier
    occurrence (n-gram); feature 1 fires there too but attributes uniformly over the prefix (other); 2 dead; 3 fires
    mostly where no target exists (coverage below AT_MATCH)."""
    import jax.numpy as jnp

    from mesalab.analysis.regbench import ngram_targets
    from mesalab.studies.attention_saes import ngram

    tokens = np.array([[1, 2, 3, 1, 2, 3, 1, 4]])
    targets = np.stack([np.asarray(ngram_targets(tokens, k + 1))[0] for k in ngram.NGRAM_KS])  # [K, T, T]
    t = tokens.shape[1]
    has1 = targets[0].any(-1)
    acts, dfa = np.zeros((t, 4)), np.zeros((t, t, 4))
    acts[has1, 0] = 1.0
    dfa[..., 0] = targets[0]                               # all its attribution on the 1-gram targets
    acts[has1, 1] = 1.0
    dfa[..., 1] = np.tril(np.ones((t, t)))                 # the whole prefix alike
    acts[~has1, 3] = 2.0
    acts[np.flatnonzero(has1)[0], 3] = 1.0
    dfa[..., 3] = targets[0]
    sums = ngram.ngram_sums(jnp.asarray(acts), jnp.asarray(dfa), jnp.asarray(targets))
    assert ngram.classify(*(np.asarray(s, np.float64) for s in sums)).tolist() == [1, 0, -1, 0]


def s8_results(shares=(0.2, 0.2), on=(0.9, 0.9), marked=([1], [1]), n_heads=2):
    r = results()
    r["s8"] = {"from_run": "x", "n_heads": n_heads, "per_seed": [
        {"ngram_share": s, "ngram_marked": o, "marked": list(m), "n_live": 100, "head_score": [0.2, 0.6]}
        for s, o, m in zip(shares, on, marked)]}
    return r


@pytest.mark.parametrize("kw, verdict", [
    ({}, "PASS"),
    ({"on": (0.5, 0.6)}, "FAIL"),                                 # the family lies off the n-gram heads
    ({"shares": (0.01, 0.02)}, "FAIL"),                           # no family
    ({"marked": ([], []), "on": (0.0, 0.0)}, "FAIL"),              # no n-gram head at all
    ({"marked": ([0, 1], [0, 1]), "on": (1.0, 1.0)}, "INCONCLUSIVE"),  # every head marked: chance meets 80%
])
def test_ngram_family_row(kw, verdict):
    assert value_of(claims(CFG, s8_results(**kw)), "ngram-family").verdict == verdict


def test_ngram_family_is_not_run_without_an_s8_run_and_fails_its_null():
    assert value_of(claims(CFG, results()), "ngram-family").verdict == "NOT RUN"
    # the null: untrained S8 models have no n-gram head and no family
    null = s8_results(shares=(0.0, 0.01), on=(float("nan"), 0.0), marked=([], []))
    rows = attach_nulls(claims(CFG, s8_results()), claims(CFG, null))
    row = value_of(rows, "ngram-family")
    assert row.verdict == "PASS" and row.null_verdict == "FAIL"


def test_s8_from_run_must_be_an_icll_run(tmp_path):
    from mesalab.studies.attention_saes import ngram
    with pytest.raises(ConfigError, match="s8_from_run"):
        override(PRESETS["smoke"], s8_from_run=str(tmp_path / "nowhere"))
    (tmp_path / "run.json").write_text(json.dumps({"study": "gd-equivalence"}))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="in-context-language-learning"):
        ngram.load(str(tmp_path))

