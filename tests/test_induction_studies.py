"""The induction-heads and induction-classification studies end to end at smoke scale."""

import json

import numpy as np
import pytest

from mesalab.config import ConfigError
from mesalab.studies import induction_classification as s4
from mesalab.studies import induction_heads as s5
from mesalab.studies.runner import run_study


def _claims_and_results(out):
    claims = json.loads((out / "claims.json").read_text())["claims"]
    return claims, json.loads((out / "results.json").read_text())


def test_induction_heads_smoke(tmp_path):
    out = run_study("induction-heads", "smoke", out=tmp_path / "run", progress=False)
    claims, results = _claims_and_results(out)
    assert len(claims) == 6 and {c["verdict"] for c in claims} <= {"PASS", "FAIL"}
    two = results["two"]
    assert set(two["curves"]) >= {"accuracy", "prev_token_l1", "induction_l2", "induction_repeated_l2", "copying_l2"}
    assert len(two["curves"]["accuracy"]) == 4 and len(two["curves"]["accuracy"][0]) == len(two["steps"])
    assert "induction_l2" not in results["one"]["curves"]  # the 1-layer control has no second layer
    for name in ("training", "attention"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000


def test_induction_classification_smoke(tmp_path):
    out = run_study("induction-classification", "smoke", out=tmp_path / "run", progress=False)
    claims, results = _claims_and_results(out)
    assert len(claims) == 10 and {c["verdict"] for c in claims} <= {"PASS", "FAIL"}
    main = results["main"]["curves"]
    assert set(main) >= {"ic_accuracy", "ic2_accuracy", "iw_accuracy", "ila1", "tila2", "tla2", "cla"}
    for acc in ("ic_accuracy", "iw_accuracy"):
        assert 0.0 <= np.min(main[acc]) and np.max(main[acc]) <= 1.0
    assert results["control"]["n_labels"] == 4  # L = N
    # The L = N saddle of the phenomenological model is exact: its claim cannot fail at any scale.
    assert claims[-1]["verdict"] == "PASS"
    assert set(results["phase"]) == {"classes", "eps", "zipf_alpha"}
    assert np.asarray(results["phase"]["eps"]["ic"]).shape == (2, 1)  # [value, seed]
    assert np.asarray(results["phase"]["eps"]["ic_half_step"]).shape == (2, 1)
    for name in ("training", "attention", "burstiness", "phase", "phenomenology"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000


def test_first_step_at_tells_a_late_transition_from_none():
    steps = [10, 20, 30, 40]
    assert s4.first_step_at(steps, [0.1, 0.2, 0.6, 0.4], 0.5) == 30  # the first crossing, not the last
    assert s4.first_step_at(steps, [0.1, 0.5, 0.9, 1.0], 0.5) == 20  # reaching the level counts
    assert np.isnan(s4.first_step_at(steps, [0.1, 0.2, 0.3, 0.4], 0.5))


def test_bad_study_configs_name_the_field():
    with pytest.raises(ConfigError, match="burstiness"):
        s4.Config(burstiness=3)  # does not divide N = 8
    with pytest.raises(ConfigError, match="repeat_half_len"):
        s5.Config(repeat_half_len=10)
