"""The mesa-reverse-engineering study end to end at smoke scale, and its building blocks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.analysis.compress import compress, interpolate
from mesalab.analysis.sensitivity import own_previous_other, token_sensitivity
from mesalab.models import Transformer, TransformerConfig, predict
from mesalab.studies.mesa_reverse import repurpose
from mesalab.studies.runner import run_study
from mesalab.tasks import DynamicsConfig


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run (trained, then the null on untrained models) shared by the tests of this module."""
    return run_study("mesa-reverse-engineering", "smoke", out=tmp_path_factory.mktemp("s3") / "run", progress=False)


def test_smoke_run_writes_results_and_figures(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    top = results["deep"][-1]
    assert np.asarray(top["probes"][0]["s_next"]).shape == (3, 20)  # [embed + 2 layers, positions]
    assert len(top["retrained"]["loss"]) == 3  # the interpolation retraining, one per seed
    assert set(top["fewshot"][0]) == {"plain", "eos_untuned", "eos", "prefix"}
    assert top["history"]["steps"][-1] == 30 and len(top["history"]["test_loss"]) == 3
    null = json.loads((smoke_run / "null_results.json").read_text())
    assert null["deep"][-1]["history"]["steps"] == [0]  # the null: untrained models, evaluated at step 0 only
    for name in ("probes", "compressed", "copying", "neumann", "fewshot"):
        assert (smoke_run / "figures" / f"{name}.png").stat().st_size > 10_000


def test_every_finding_fails_on_its_null(smoke_run):
    claims = json.loads((smoke_run / "claims.json").read_text())["claims"]
    ids = {c["id"] for c in claims}
    assert {"probe-depth-s_next", "probe-context-preconditioned", "retrained-interpolation", "mesa-dataset-copy",
            "mesa-dataset-previous", "neumann-depth", "fewshot-eos", "fewshot-prefix"} <= ids
    findings = [c for c in claims if c["kind"] == "finding"]
    assert findings and all(c["null_verdict"] in {"FAIL", "INCONCLUSIVE", "NOT RUN"} for c in findings)


def test_sequence_formats_put_examples_where_the_predictions_are_read():
    x, y = jnp.ones((1, 3, 2)), 2 * jnp.ones((1, 3, 2))
    seq, starts = repurpose.sequence(x, y, eos=jnp.full(2, 9.0), prefix=jnp.full((2, 2), 7.0))
    assert seq.shape == (1, 2 + 9, 2) and starts.tolist() == [2, 5, 8]
    np.testing.assert_allclose(seq[0, :, 0], [7, 7, 1, 2, 9, 1, 2, 9, 1, 2, 9])
    plain, starts = repurpose.sequence(x, y)
    assert plain.shape == (1, 6, 2) and starts.tolist() == [0, 2, 4]


def test_least_squares_solves_noise_free_regression_after_d_examples():
    x, y = repurpose.sample_regression(jax.random.PRNGKey(0), 64, 8, 3)
    curve = np.asarray(repurpose.least_squares_curve(x, y))
    assert curve[0] > 0.5 and curve[4:].max() < 1e-3


def test_interpolation_ends_are_the_trained_and_the_compressed_model():
    cfg = TransformerConfig(d_model=8, n_layers=2, n_heads=2, d_head=3, init_scale=0.3, readout_size=2)
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    x = DynamicsConfig(d=2, seq_len=6).sample(jax.random.PRNGKey(1), 3).inputs
    np.testing.assert_allclose(predict(interpolate(model, 4, 0.0), x), predict(model, x), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(predict(interpolate(model, 4, 1.0), x), predict(compress(model, 4), x), rtol=1e-4,
                               atol=1e-6)


def test_sensitivity_separates_own_previous_and_other_tokens():
    norms = jnp.asarray(np.tril(np.full((5, 5), 0.1)) + np.diag(np.full(5, 1.0)) + np.diag(np.full(4, 3.0), -1))
    np.testing.assert_allclose(own_previous_other(norms), [1.1, 3.1, 0.1], rtol=1e-6)
    cfg = TransformerConfig(d_model=4, n_layers=1, n_heads=1, d_head=4, init_scale=0.5)
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    sens = token_sensitivity(model, jax.random.normal(jax.random.PRNGKey(1), (5, 4)), "blocks.0.hook_attn_out")
    assert sens.shape == (5, 5) and float(jnp.triu(sens, 1).max()) == 0.0  # causal: nothing read from the future
