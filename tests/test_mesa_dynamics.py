"""The mesa-dynamics study end to end at smoke scale, and its configuration errors."""

import json

import pytest

from mesalab.config import ConfigError
from mesalab.studies.mesa_dynamics.models import model_setup, parameter_count
from mesalab.studies.runner import run_study, study_config


def test_smoke_run_writes_claims_figures_and_report(tmp_path):
    out = run_study("mesa-dynamics", "smoke", out=tmp_path / "run", progress=False)
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert len(claims) == 8 and all(c["verdict"] in ("PASS", "FAIL", "NOT RUN") for c in claims)
    results = json.loads((out / "results.json").read_text())
    assert set(results["compare"]) == {"mesa-1", "linear-2"}
    assert len(results["default"]["curve"]) == 3 and len(results["default"]["curve"][0]) == 20
    # The compressed 1-layer model is rebuilt from 12 scalars per seed: 2 heads × (2×2 + 2).
    assert len(results["one_layer"]["analysis"]["scalars_qk"][0]) == 2
    for name in ("per_position", "training", "mesa_vs_depth", "weights", "compressed_1layer"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert "mesa layer" in (out / "report.html").read_text()


def test_parameter_counts_match_the_paper():
    # reference/mesa.md §2.4: the default 2-layer, 4-head, key-20 model on width-40 tokens has 25,600 parameters.
    assert parameter_count(model_setup("linear-2", 10, 50, 0.01, 2e-4, 1.5)[1]) == 25_600
    assert parameter_count(model_setup("mesa-1", 10, 50, 0.01, 2e-4, 1.5)[1]) == 12_800 + 4  # + one λ per head


def test_bad_model_names_are_rejected():
    with pytest.raises(ConfigError, match="model name 'mesa' is not allowed; expected one of linear-L"):
        study_config("mesa-dynamics", "smoke", ["models=mesa"])
    with pytest.raises(ConfigError, match="includes a mesa model"):
        study_config("mesa-dynamics", "smoke", ["models=linear-2,softmax-2"])
