import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.config import ConfigError, from_dict, to_dict
from mesalab.models import Transformer, TransformerConfig, UnknownSiteError, hooks, run, weights


def test_cache_sites_have_documented_shapes(tiny_model, tiny_inputs):
    out, cache = run(tiny_model, tiny_inputs, sites="all")
    b, t, _ = tiny_inputs.shape
    assert out.shape == (b, t, 2)
    assert set(cache) == set(tiny_model.site_names())
    for name, act in cache.items():
        if name.endswith(("hook_q", "hook_k", "hook_v", "hook_z")):
            assert act.shape == (b, t, 2, 4), name
        elif name.endswith(("hook_pattern", "hook_attn_scores")):
            assert act.shape == (b, 2, t, t), name
        elif ".mlp." in name:
            assert act.shape == (b, t, 16), name
        else:
            assert act.shape == (b, t, 8), name


def test_softmax_pattern_is_causal_and_normalised(tiny_model, tiny_inputs):
    _, cache = run(tiny_model, tiny_inputs, sites=["blocks.0.attn.hook_pattern"])
    p = cache["blocks.0.attn.hook_pattern"]
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    assert float(jnp.abs(jnp.triu(p, k=1)).max()) == 0.0


def test_glob_and_unknown_sites(tiny_model, tiny_inputs):
    _, cache = run(tiny_model, tiny_inputs, sites=["*hook_pattern"])
    assert sorted(cache) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    with pytest.raises(UnknownSiteError, match="Did you mean blocks.0.attn.hook_pattern") as e:
        run(tiny_model, tiny_inputs, sites=["blocks.0.attn.hook_patern"])
    assert "Valid sites: hook_embed" in str(e.value)
    with pytest.raises(UnknownSiteError, match="unknown site 'blocks.9.hook_resid_pre'"):
        run(tiny_model, tiny_inputs, interventions={"blocks.9.hook_resid_pre": hooks.zero_ablate()})


def test_zero_ablating_a_head_equals_removing_it_by_surgery(tiny_model, tiny_inputs):
    ablated = run(tiny_model, tiny_inputs, interventions={"blocks.1.attn.hook_z": hooks.zero_ablate(heads=1)})
    removed = run(weights.remove_head(tiny_model, 1, 1), tiny_inputs)
    untouched = run(tiny_model, tiny_inputs)
    np.testing.assert_allclose(ablated, removed, rtol=1e-6, atol=1e-7)
    assert float(jnp.abs(ablated - untouched).max()) > 1e-4  # the head mattered


def test_patching_a_full_cache_reproduces_the_source_run(tiny_model):
    a = jax.random.normal(jax.random.PRNGKey(2), (3, 6, 3))
    b = jax.random.normal(jax.random.PRNGKey(3), (3, 6, 3))
    out_a, cache_a = run(tiny_model, a, sites="all")
    patched = run(tiny_model, b, interventions=hooks.patch_all(cache_a))
    np.testing.assert_allclose(patched, out_a, rtol=1e-6, atol=1e-7)
    # Patching one early site alone changes B's output but does not make it A's.
    one = run(tiny_model, b, interventions={"blocks.0.attn.hook_z": hooks.patch(cache_a, "blocks.0.attn.hook_z")})
    assert float(jnp.abs(one - run(tiny_model, b)).max()) > 1e-4
    assert float(jnp.abs(one - out_a).max()) > 1e-4


def test_head_and_position_restricted_interventions(tiny_model, tiny_inputs):
    site = "blocks.0.attn.hook_q"
    iv = {site: hooks.clamp(7.0, heads=[0], positions=[2, 3])}
    _, cache = run(tiny_model, tiny_inputs, sites=[site], interventions=iv)
    _, clean = run(tiny_model, tiny_inputs, sites=[site])
    q, q0 = cache[site], clean[site]
    assert np.all(q[:, 2:4, 0] == 7.0)
    np.testing.assert_array_equal(q[:, :, 1], q0[:, :, 1])
    np.testing.assert_array_equal(q[:, :2, 0], q0[:, :2, 0])
    added = run(tiny_model, tiny_inputs, sites=["blocks.0.hook_resid_pre"],
                interventions={"blocks.0.hook_resid_pre": hooks.add(jnp.ones(8), positions=0)})[1]
    np.testing.assert_allclose(added["blocks.0.hook_resid_pre"][:, 0] - clean_embed(tiny_model, tiny_inputs)[:, 0], 1.0,
                               rtol=1e-6)


def clean_embed(model, x):
    return run(model, x, sites=["blocks.0.hook_resid_pre"])[1]["blocks.0.hook_resid_pre"]


def test_mean_ablation_uses_the_batch_mean(tiny_model, tiny_inputs):
    site = "blocks.0.hook_attn_out"
    _, cache = run(tiny_model, tiny_inputs, sites=[site])
    _, ab = run(tiny_model, tiny_inputs, sites=[site], interventions={site: hooks.mean_ablate(cache, site)})
    np.testing.assert_allclose(ab[site], np.broadcast_to(cache[site].mean(0), ab[site].shape), rtol=1e-6)


def test_interventions_work_under_jit_vmap_and_grad(tiny_model, tiny_inputs):
    site = "blocks.1.attn.hook_pattern"

    def loss(model, value):
        iv = {site: hooks.clamp(value)}
        return jnp.sum(run(model, tiny_inputs, interventions=iv) ** 2)

    value = jnp.full((6, 6), 0.1)
    g_model, g_value = jax.jit(jax.grad(loss, argnums=(0, 1)))(tiny_model, value)
    assert float(jnp.abs(g_value).sum()) > 0
    # With layer 1's pattern clamped, its queries and keys no longer affect anything: zero gradient.
    assert float(jnp.abs(g_model.blocks[1].attn.W_Q).max()) == 0.0
    assert float(jnp.abs(g_model.blocks[1].attn.W_V).max()) > 0.0
    many = jax.vmap(lambda v: loss(tiny_model, v))(jnp.stack([value, 2 * value]))
    np.testing.assert_allclose(many[0], loss(tiny_model, value), rtol=1e-5)


def test_weight_products_match_scores_and_updates():
    cfg = TransformerConfig(d_model=5, n_layers=1, n_heads=2, d_head=3, causal=False)
    m = Transformer(cfg, key=jax.random.PRNGKey(4))
    e = jax.random.normal(jax.random.PRNGKey(5), (4, 5))
    _, cache = m.run_with_cache(e, ["blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_z"])
    qk = weights.qk(m, 0, 1)
    np.testing.assert_allclose(cache["blocks.0.attn.hook_attn_scores"][1, 2, 3], e[3] @ qk @ e[2], rtol=1e-4)
    # Linear attention: head 1's contribution to token j is Σ_i score(j, i) · P W_V e_i.
    scores = cache["blocks.0.attn.hook_attn_scores"][1]
    contrib = sum(scores[2, i] * (weights.ov(m, 0, 1) @ e[i]) for i in range(4))
    np.testing.assert_allclose(contrib, cache["blocks.0.attn.hook_z"][2, 1] @ weights.W_O(m, 0, 1), rtol=1e-4, atol=1e-6)
    assert weights.all_qk(m).shape == (1, 2, 5, 5) and weights.all_ov(m).shape == (1, 2, 5, 5)
    np.testing.assert_allclose(weights.all_ov(m)[0, 1], weights.ov(m, 0, 1), rtol=1e-6)


def test_keys_from_context_hides_the_query_token():
    cfg = TransformerConfig(d_model=4, n_layers=1, n_heads=1, d_head=4, causal=False, keys_from="context")
    m = Transformer(cfg, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    x2 = x.at[-1].set(x[-1] * 3.0)  # change only the query
    # The context tokens' outputs do not depend on the query token at all.
    np.testing.assert_allclose(m(x)[:-1], m(x2)[:-1], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_layers": -1}, "n_layers"),
        ({"d_head": 0}, "d_head"),
        ({"attention": "relu"}, "attention"),
        ({"n_layers": 2, "attention": ("linear",)}, "attention"),
        ({"keys_from": "query"}, "keys_from"),
        ({"pos_embedding": "learned"}, "max_len"),
        ({"mlp_activation": "swish"}, "mlp_activation"),
        ({"readout_start": 99}, "readout_start"),
    ],
)
def test_bad_model_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"TransformerConfig.{field}"):
        TransformerConfig(**kwargs)


def test_model_config_round_trips(tiny_cfg):
    assert from_dict(TransformerConfig, to_dict(tiny_cfg)) == tiny_cfg


def test_wrong_input_shape_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match=r"expects one sequence of shape \[pos, 3\]"):
        tiny_model(jnp.zeros((2, 6, 3)))


def test_bad_interventions_name_the_site(tiny_model, tiny_inputs):
    with pytest.raises(ValueError, match="Intervention.kind = 'ad'"):
        hooks.Intervention(jnp.zeros(()), kind="ad")
    with pytest.raises(ValueError, match=r"intervention on 'blocks.0.hook_resid_pre': value of shape \(5,\)"):
        run(tiny_model, tiny_inputs, interventions={"blocks.0.hook_resid_pre": hooks.add(jnp.ones(5))})
    _, unbatched = tiny_model.run_with_cache(tiny_inputs[0], ["blocks.0.hook_attn_out"])
    with pytest.raises(ValueError, match="mean_ablate needs a batched cache"):
        hooks.mean_ablate(unbatched, "blocks.0.hook_attn_out")
    with pytest.raises(ValueError, match=r"expects a batch \[B, pos, d_in\]"):
        run(tiny_model, tiny_inputs[0])


def test_concatenated_positions_keep_the_token_features():
    """pos_embedding='concat_sinusoidal' appends a fixed code of width pos_dim instead of adding one."""
    from mesalab.models.transformer import sinusoidal_positions

    cfg = TransformerConfig(d_model=7, n_layers=1, n_heads=1, d_head=7, pos_embedding="concat_sinusoidal", pos_dim=4)
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3))  # tokens of width d_model − pos_dim
    _, cache = model.run_with_cache(x, ["blocks.0.hook_resid_pre", "hook_pos_embed"])
    np.testing.assert_allclose(cache["blocks.0.hook_resid_pre"][:, :3], x)
    np.testing.assert_allclose(cache["blocks.0.hook_resid_pre"][:, 3:], sinusoidal_positions(5, 4), atol=1e-6)
    with pytest.raises(ConfigError, match="pos_dim = 0 is not allowed"):
        TransformerConfig(d_model=7, pos_embedding="concat_sinusoidal")


def test_input_mlp_is_a_residual_feature_map_after_the_embedding():
    """d_input_mlp adds h ← h + MLP(h) on the embedded tokens (von Oswald et al. §5); 0 leaves models unchanged."""
    base = TransformerConfig(d_model=6, n_layers=1, n_heads=1, d_head=6, d_in=2)
    cfg = TransformerConfig(d_model=6, n_layers=1, n_heads=1, d_head=6, d_in=2, d_input_mlp=12)
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 2))
    _, cache = model.run_with_cache(x, "all")
    assert cache["input_mlp.hook_post"].shape == (5, 12)
    h = x @ model.W_E
    mlp = model.input_mlp
    want = h + jax.nn.gelu(h @ mlp.W_in + mlp.b_in) @ mlp.W_out + mlp.b_out
    np.testing.assert_allclose(cache["hook_embed"], want, rtol=1e-5, atol=1e-6)
    assert model.site_names()[:3] == ["input_mlp.hook_pre", "input_mlp.hook_post", "hook_embed"]
    # without it, weights are drawn exactly as before
    plain = Transformer(base, key=jax.random.PRNGKey(0))
    assert plain.input_mlp is None and "input_mlp.hook_pre" not in plain.site_names()
    np.testing.assert_array_equal(plain.blocks[0].attn.W_Q, model.blocks[0].attn.W_Q)
    with pytest.raises(ConfigError, match="TransformerConfig.d_input_mlp"):
        TransformerConfig(d_input_mlp=-1)
