"""SAEs on attention outputs (analysis/sae.py, sae_metrics.py, sae_io.py): the decoder constraint, the metrics on
hand-built cases, the SAELens layout read back without SAELens, and a short ensemble training on a tiny trained
model's hook_z (Kissane et al. 2024; reference/induction.md §5)."""

import functools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open

from mesalab.analysis import sae_metrics as sm
from mesalab.analysis.sae import (
    SAE, SAEConfig, adam, init_sae, init_state, member_step, remove_parallel_grad, resample_member, site_activations,
    train_saes,
)
from mesalab.analysis.sae_io import hook_name_of, read_sae, write_ensemble, write_sae
from mesalab.config import ConfigError
from mesalab.models import Transformer, TransformerConfig
from mesalab.tasks import CopyingConfig
from mesalab.train import TrainConfig, Trainer

TASK = CopyingConfig(n_items=16, n_labels=8, n_pairs=4, bos=True)
MODEL = TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_head=8, attention="softmax", d_in=TASK.vocab_size,
                          d_out=TASK.vocab_size, pos_embedding="learned", max_len=TASK.seq_len, init_scale=0.1)
SITE = "blocks.1.attn.hook_z"
D_IN = MODEL.n_heads * MODEL.d_head
# λ sized to this model's hook_z (‖x‖ ≈ 2.6); lr above Kissane's 1.2e-3 so that 400 steps suffice.
CFG = SAEConfig(site=SITE, expansion=4, l1_coeffs=(0.03, 0.3), seeds=(0, 1), steps=400, batch_size=16, lr=1e-2,
                warmup_steps=50, resample_every=200, max_resamples=1, resample_batches=2, chunk_steps=100)


@pytest.fixture(scope="module")
def model():
    train = TrainConfig(steps=300, batch_size=32, lr=6e-3, chunk_steps=100, eval_batch_size=64)
    return Trainer(TASK, functools.partial(Transformer, MODEL), train).fit(1, progress=False).member(0)


@pytest.fixture(scope="module")
def trained(model):
    return train_saes(CFG, model, TASK)


def both_signs(d: int) -> SAE:
    """A perfect SAE: f = (relu(x), relu(−x)), x̂ = relu(x) − relu(−x) = x; unit decoder rows."""
    eye = jnp.eye(d)
    return SAE(jnp.concatenate([eye, -eye], axis=1), jnp.zeros(2 * d), jnp.concatenate([eye, -eye]), jnp.zeros(d))


def test_parallel_gradient_is_removed_and_rows_stay_unit_norm():
    w = init_sae(6, 12, key=jax.random.PRNGKey(0)).W_dec * 3.0  # rows of norm 3: the projection normalises them
    g = jax.random.normal(jax.random.PRNGKey(1), w.shape)
    g_perp = remove_parallel_grad(g, w)
    np.testing.assert_allclose(np.sum(np.asarray(g_perp) * np.asarray(w), axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(g - g_perp, np.sum(np.asarray(g) * w, 1, keepdims=True) * w / 9.0, atol=1e-5)
    # one optimizer step: the rows turn (the update is not only along them) and end at unit norm
    cfg = SAEConfig(site=SITE, lr=1e-2, warmup_steps=0)
    sae = init_sae(6, 12, key=jax.random.PRNGKey(2))
    x = jax.random.normal(jax.random.PRNGKey(3), (64, 6))
    step = jax.jit(member_step, static_argnums=0)
    new, *_ = step(cfg, sae, adam(cfg).init(sae), jnp.int32(0), jnp.float32(0.1), x, jnp.int32(0))
    np.testing.assert_allclose(jnp.linalg.norm(new.W_dec, axis=1), 1.0, rtol=1e-5)
    assert float(jnp.min(jnp.sum(new.W_dec * sae.W_dec, axis=1))) < 1.0 - 1e-6
    # with unit rows, SAELens's decoder-norm weighting of the L1 term changes nothing
    cfg_w = SAEConfig(site=SITE, lr=1e-2, warmup_steps=0, l1_weighting="decoder_norm")
    new_w, *_ = step(cfg_w, sae, adam(cfg).init(sae), jnp.int32(0), jnp.float32(0.1), x, jnp.int32(0))
    np.testing.assert_allclose(new_w.W_dec, new.W_dec, atol=1e-6)


def test_l0_dead_fraction_and_explained_variance_on_hand_built_cases():
    f = jnp.asarray([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    assert float(sm.l0(f)) == pytest.approx(4 / 3)
    np.testing.assert_allclose(sm.feature_frequency(f), [2 / 3, 0, 2 / 3, 0])
    assert float(sm.dead_fraction(sm.feature_frequency(f))) == 0.5
    assert float(sm.dead_fraction(jnp.asarray([0.0, 1e-7, 1e-3]), 1e-6)) == pytest.approx(2 / 3)
    x = jax.random.normal(jax.random.PRNGKey(0), (100, 5))
    assert float(sm.explained_variance(x, x)) == pytest.approx(1.0)
    assert float(sm.explained_variance(x, jnp.broadcast_to(x.mean(0), x.shape))) == pytest.approx(0.0, abs=1e-6)
    assert float(sm.explained_variance(x, x + 0.5 * (x.mean(0) - x))) == pytest.approx(0.75, abs=1e-5)


def test_head_attribution_sums_to_one_and_finds_the_head():
    w = np.zeros((3, 6), np.float32)  # 3 heads of d_head 2
    w[0, 2:4] = [0.6, 0.8]           # all in head 1
    w[1, [0, 4]] = [0.6, 0.8]        # 0.36 in head 0, 0.64 in head 2
    w[2] = 1 / np.sqrt(6)            # spread evenly
    att = np.asarray(sm.head_attribution(jnp.asarray(w), 3))
    np.testing.assert_allclose(att.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(att, [[0, 1, 0], [0.36, 0, 0.64], [1 / 3] * 3], atol=1e-6)
    assert list(att.argmax(1)[:2]) == [1, 2]


def test_loss_recovered_is_one_for_a_perfect_and_zero_for_a_zero_reconstruction(model):
    batch = TASK.sample(jax.random.PRNGKey(5), 64)
    perfect = sm.loss_recovered(model, both_signs(D_IN), batch, SITE, task=TASK)
    assert float(perfect["loss_recovered"]) == pytest.approx(1.0, abs=1e-4)
    assert float(perfect["loss_zero"]) > float(perfect["loss_clean"])
    blank = SAE(jnp.zeros((D_IN, 4)), jnp.zeros(4), jnp.zeros((4, D_IN)), jnp.zeros(D_IN))
    zero = sm.loss_recovered(model, blank, batch, SITE, task=TASK)
    assert float(zero["loss_recovered"]) == pytest.approx(0.0, abs=1e-6)


def test_dfa_sums_to_the_pre_activation_less_the_bias_terms(model):
    sae = init_sae(D_IN, 32, key=jax.random.PRNGKey(7))
    sae = eqx.tree_at(lambda s: (s.b_enc, s.b_dec), sae, (jnp.full(32, 0.3), jnp.linspace(-0.1, 0.1, D_IN)))
    tokens = TASK.sample(jax.random.PRNGKey(8), 1).inputs[0]
    out = sm.direct_feature_attribution(model, sae, 1, tokens, 5)
    q, s, h = out["dfa"].shape
    assert (q, s, h) == (tokens.shape[0], tokens.shape[0], MODEL.n_heads)
    np.testing.assert_allclose(out["dfa"].sum((1, 2)) + out["bias"], out["pre"], atol=1e-5)
    assert np.all(np.asarray(out["dfa"])[np.triu_indices(q, 1)] == 0)  # causal: no attribution to later tokens
    # every feature at once, summed over heads, batched: the same numbers
    _, cache = model.run_with_cache(tokens, ["blocks.1.attn.hook_pattern", "blocks.1.attn.hook_v"])
    every = sm.dfa_by_source(cache["blocks.1.attn.hook_pattern"][None], cache["blocks.1.attn.hook_v"][None], sae.W_enc)
    np.testing.assert_allclose(every[0, :, :, 5], out["dfa"].sum(-1), atol=1e-6)


def test_sae_lens_layout_round_trips_without_sae_lens(tmp_path):
    sae = init_sae(D_IN, 64, key=jax.random.PRNGKey(0))
    sae = eqx.tree_at(lambda s: s.b_enc, sae, jnp.arange(64, dtype=jnp.float32))
    folder = write_sae(tmp_path / "one", sae, SITE, model_name="tiny", context_size=TASK.seq_len)
    cfg = json.loads((folder / "cfg.json").read_text())
    # SAELens ≥ 6's layout: the SAEConfig fields at the top level, hook and model under metadata
    assert {k: cfg[k] for k in ("d_in", "d_sae", "reshape_activations", "architecture", "dtype", "device",
                                "apply_b_dec_to_input", "normalize_activations")} == {
        "d_in": D_IN, "d_sae": 64, "reshape_activations": "hook_z", "architecture": "standard", "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none"}
    meta = cfg["metadata"]
    assert (meta["hook_name"], meta["model_name"], meta["context_size"]) == (SITE, "tiny", TASK.seq_len)
    assert int(meta["sae_lens_version"].split(".")[0]) >= 6  # SAELens's loader then reads the file as written
    with safe_open(str(folder / "sae_weights.safetensors"), framework="numpy") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    assert {k: v.shape for k, v in stored.items()} == {"W_enc": (D_IN, 64), "b_enc": (64,), "W_dec": (64, D_IN),
                                                       "b_dec": (D_IN,)}
    for name in stored:
        np.testing.assert_array_equal(stored[name], np.asarray(getattr(sae, name)))
    back, back_cfg = read_sae(folder)
    assert hook_name_of(back_cfg) == SITE
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(sae), strict=True):
        np.testing.assert_array_equal(a, b)
    flat = {k: v for k, v in cfg.items() if k != "metadata"} | {"hook_name": SITE}  # a pre-6 SAELens cfg.json
    (folder / "cfg.json").write_text(json.dumps(flat))
    assert hook_name_of(read_sae(folder)[1]) == SITE
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), sae, back)
    paths = write_ensemble(tmp_path / "ens", stacked, SITE, [(0.1, 0), (0.1, 1)])
    assert [p.name for p in paths] == ["l1_0.1-seed_0", "l1_0.1-seed_1"]
    assert json.loads((paths[1] / "cfg.json").read_text())["metadata"]["mesalab"] == {"l1_coeff": 0.1, "seed": 1, "member": 1}


def test_resampling_revives_a_dead_feature(model):
    cfg = SAEConfig(site=SITE)
    x = jax.random.normal(jax.random.PRNGKey(0), (256, 6)) + 1.0
    sae = init_sae(6, 12, key=jax.random.PRNGKey(1))
    sae = eqx.tree_at(lambda s: s.b_enc, sae, sae.b_enc.at[3].set(-1e3))  # feature 3 can never fire
    opt = adam(cfg).init(sae)
    opt = jax.tree_util.tree_map(lambda a: a + 1.0 if a.dtype == jnp.float32 else a, opt)
    fired = (sae.encode(x) > 0).sum(0)
    assert int(fired[3]) == 0 and int((fired > 0).sum()) == 11
    resample = jax.jit(resample_member, static_argnums=0)
    new, new_opt, since, n = resample(cfg, sae, opt, fired, jnp.int32(256), jnp.int32(500), x, jax.random.PRNGKey(2))
    assert int(n) == 1 and int(since) == 0
    assert int((new.encode(x) > 0).sum(0)[3]) > 0                        # it fires again
    assert float(new.b_enc[3]) == 0.0 and float(jnp.linalg.norm(new.W_dec[3])) == pytest.approx(1.0, abs=1e-5)
    # its decoder row points at one of the pool's tokens (less b_dec); the live features are untouched
    cos = (x - sae.b_dec) @ new.W_dec[3] / jnp.linalg.norm(x - sae.b_dec, axis=1)
    assert float(cos.max()) == pytest.approx(1.0, abs=1e-5)
    others = np.arange(12) != 3
    np.testing.assert_array_equal(new.W_dec[others], sae.W_dec[others])
    mu = new_opt.mu
    assert float(jnp.abs(mu.W_enc[:, 3]).max()) == 0.0 and float(mu.W_enc[:, 0].min()) == 1.0
    # in the training loop: feature 0 killed in every member is resampled at step 200 (CFG.resample_every)
    state = init_state(CFG, D_IN)
    state["sae"] = eqx.tree_at(lambda s: s.b_enc, state["sae"], state["sae"].b_enc.at[:, 0].set(-1e3))
    out = train_saes(CFG, model, TASK, state=state, stop_after=200)
    assert np.all(np.asarray(out.saes.b_enc[:, 0]) == 0.0) and np.all(np.asarray(out.state["resampled"]) >= 1)


def test_ensemble_training_learns_and_l1_orders_l0(model, trained):
    np.testing.assert_allclose(jnp.linalg.norm(trained.saes.W_dec, axis=-1), 1.0, rtol=1e-5)
    key = jax.random.PRNGKey(99)
    before = sm.evaluate(model, init_state(CFG, D_IN)["sae"], TASK, SITE, key=key, batch_size=128)
    after = sm.evaluate(model, trained.saes, TASK, SITE, key=key, batch_size=128)
    assert np.all(np.asarray(after["mse"]) < 0.1 * np.asarray(before["mse"]))  # every member learned
    assert np.all(np.asarray(after["explained_variance"]) > 0.9)
    assert np.all(np.asarray(after["loss_recovered"]) > 0.8)
    l0 = np.asarray(after["l0"])
    assert max(l0[2:]) < 0.6 * min(l0[:2])                               # members 2, 3 have the larger λ
    curve = trained.history.pivot_table(index="step", columns=["metric", "member"], values="value")
    assert list(curve.index) == [100, 200, 300, 400]


def test_continuing_a_run_gives_the_same_numbers(model, trained):
    half = train_saes(CFG, model, TASK, stop_after=200)
    rest = train_saes(CFG, model, TASK, state=half.state)
    for a, b in zip(jax.tree_util.tree_leaves(rest.saes), jax.tree_util.tree_leaves(trained.saes), strict=True):
        np.testing.assert_array_equal(a, b)


def test_streamed_activations_concatenate_heads(model):
    inputs = TASK.sample(jax.random.PRNGKey(0), 16).inputs
    x = site_activations(model, SITE, inputs)
    assert x.shape == (16 * TASK.seq_len, D_IN)
    z = jax.vmap(lambda s: model.run_with_cache(s, [SITE])[1][SITE])(inputs)   # [B, pos, head, d_head]
    np.testing.assert_array_equal(x[TASK.seq_len + 2, MODEL.d_head:], z[1, 2, 1])  # head 1 is the second block
    last = site_activations(model, SITE, inputs, (TASK.seq_len - 1,))
    np.testing.assert_array_equal(last, x.reshape(16, TASK.seq_len, D_IN)[:, -1])


def test_bad_config_names_the_field(model):
    with pytest.raises(ConfigError, match="l1_weighting"):
        SAEConfig(l1_weighting="l2")
    with pytest.raises(ConfigError, match="l1_coeffs"):
        SAEConfig(l1_coeffs=())
    with pytest.raises(ConfigError, match="resample_batches"):
        train_saes(SAEConfig(site=SITE, expansion=64, batch_size=1, resample_batches=1), model, TASK)
