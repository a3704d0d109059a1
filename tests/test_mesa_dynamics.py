"""The mesa-dynamics study end to end at smoke scale (one shared run: trained, then its null), and its configuration
errors."""

import json

import pytest

from mesalab.config import ConfigError
from mesalab.studies.mesa_dynamics.models import model_setup, parameter_count
from mesalab.studies.runner import run_study, study_config


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return run_study("mesa-dynamics", "smoke", out=tmp_path_factory.mktemp("s2") / "run", progress=False)


def test_smoke_run_writes_rows_with_nulls_figures_and_report(smoke):
    rows = json.loads((smoke / "claims.json").read_text())["claims"]
    ids = {r["id"] for r in rows}
    assert {"default-loss", "in-context", "mesa-beats-stacks", "mesa-near-lsq", "hybrid-best", "one-layer-gd1",
            "compressed-loss", "lsq-all-t10", "lsq-one-fewer-t10", "acting-scalars", "eta-term-gd"} == ids
    findings = [r for r in rows if r["kind"] == "finding"]
    # On untrained models no finding may pass.
    assert {r["id"]: r["null_verdict"] for r in findings if r["null_verdict"] not in ("FAIL", "INCONCLUSIVE",
                                                                                      "NOT RUN")} == {}
    # The identities hold on any weights, trained or not.
    assert all(r["verdict"] == "PASS" for r in rows if r["id"] in ("acting-scalars", "eta-term-gd"))
    results = json.loads((smoke / "results.json").read_text())
    null = json.loads((smoke / "null_results.json").read_text())
    assert set(results["compare"]) == {"mesa-1", "linear-2"}
    assert len(results["default"]["curve"]) == 3 and len(results["default"]["curve"][0]) == 20
    assert results["default"]["history"]["steps"][-1] == 40 and null["default"]["history"]["steps"] == [0]
    # The compressed parameter count is computed: 2 heads × (2 × 2 + 1 × 2) acting scalars.
    assert results["one_layer"]["analysis"]["compressed_params"] == 12
    assert results["one_layer"]["analysis"]["input_slots"] == [2, 3]
    for name in ("per_position", "training", "mesa_vs_depth", "weights", "compressed_1layer"):
        assert (smoke / "figures" / f"{name}.png").stat().st_size > 10_000
    assert "mesa layer" in (smoke / "report.html").read_text()


def test_parameter_counts_match_the_paper():
    # reference/mesa.md §2.4: the default 2-layer, 4-head, key-20 model on width-40 tokens has 25,600 parameters.
    assert parameter_count(model_setup("linear-2", 10, 50, 0.01, 2e-4, 1.5)[1]) == 25_600
    assert parameter_count(model_setup("mesa-1", 10, 50, 0.01, 2e-4, 1.5)[1]) == 12_800 + 4  # + one λ per head


def test_bad_model_names_are_rejected():
    with pytest.raises(ConfigError, match="model name 'mesa' is not allowed; expected one of linear-L"):
        study_config("mesa-dynamics", "smoke", ["models=mesa"])
    with pytest.raises(ConfigError, match="includes a mesa model"):
        study_config("mesa-dynamics", "smoke", ["models=linear-2,softmax-2"])
