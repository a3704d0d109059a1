import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis import alignment, interpolate_products, normalized_products, query_sensitivity
from mesalab.analysis.alignment import x_block_offdiag_ratio
from mesalab.constructions import gd_lsa
from mesalab.models import predict, weights
from mesalab.studies.gd_equivalence import lsa_config
from mesalab.tasks import RegressionConfig

TASK = RegressionConfig(d=4, n_context=6, x_half_width=0.5)
BATCH = TASK.sample(jax.random.PRNGKey(0), 128)


def test_sensitivity_of_the_gd_construction_is_its_linear_model():
    model = gd_lsa(lsa_config(TASK), TASK, 2.0)
    sens = query_sensitivity(lambda t: model.predict_last(t)[0], BATCH.inputs, TASK.d)
    x, y = BATCH.info["x"], BATCH.info["y"]
    want = 2.0 / TASK.n_context * jnp.einsum("bn,bnd->bd", y[:, :-1], x[:, :-1])  # (η/N) Σ y_i x_i
    np.testing.assert_allclose(sens, want, rtol=1e-4, atol=1e-6)


def test_alignment_of_a_model_with_itself_and_with_a_rescaled_copy():
    model = gd_lsa(lsa_config(TASK), TASK, 2.0)
    other = gd_lsa(lsa_config(TASK), TASK, 3.0)
    p = lambda m: predict(m, BATCH.inputs)[:, -1, 0]  # noqa: E731
    s = lambda m: query_sensitivity(lambda t: m.predict_last(t)[0], BATCH.inputs, TASK.d)  # noqa: E731
    same = alignment(p(model), p(model), s(model), s(model))
    assert float(same["pred_diff"]) == 0 and np.isclose(float(same["sens_cos"]), 1.0, atol=1e-5)
    scaled = alignment(p(model), p(other), s(model), s(other))
    # Same direction, different step size: cosine 1, but predictions and L2 differ (BLOG's observation).
    assert np.isclose(float(scaled["sens_cos"]), 1.0, atol=1e-5) and float(scaled["pred_diff"]) > 1e-3


def test_scale_symmetry_is_removed_and_interpolation_keeps_the_function():
    construction = gd_lsa(lsa_config(TASK), TASK, 2.0)
    # Rescale K-Q by 3 and V-P by 1/3: same function, different weights.
    attn = construction.blocks[0].attn
    rescaled = weights.set_head(construction, 0, 0, W_K=attn.W_K[0] * 3.0, W_O=attn.W_O[0] / 3.0)
    np.testing.assert_allclose(predict(rescaled, BATCH.inputs), predict(construction, BATCH.inputs), rtol=1e-5, atol=1e-6)
    qk_n, ov_n, c = normalized_products(rescaled, TASK.d)
    assert np.isclose(float(c), 3.0)
    np.testing.assert_allclose(qk_n, weights.qk(construction, 0, 0), atol=1e-6)
    np.testing.assert_allclose(ov_n, weights.ov(construction, 0, 0), atol=1e-6)
    assert float(x_block_offdiag_ratio(qk_n, TASK.d)) == 0.0
    mid = interpolate_products(rescaled, construction, TASK.d)
    np.testing.assert_allclose(predict(mid, BATCH.inputs), predict(construction, BATCH.inputs), rtol=1e-4, atol=1e-6)


def test_iterating_the_gd_construction_with_damping_is_gd_at_the_damped_rate():
    from mesalab.algorithms import gd_predict
    from mesalab.studies.gd_equivalence.transfer import iterated

    model = gd_lsa(lsa_config(TASK), TASK, 2.0)
    deep = iterated(model, 4, 0.75)
    x, y = BATCH.info["x"], BATCH.info["y"]
    got = predict(deep, BATCH.inputs)[:, -1, 0]
    np.testing.assert_allclose(got, gd_predict(x[:, :-1], y[:, :-1], x[:, -1], [1.5] * 4), rtol=1e-4, atol=1e-6)
