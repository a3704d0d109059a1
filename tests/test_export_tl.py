"""Round trip into TransformerLens: exported models give mesalab's logits and attention patterns.

Needs torch and transformer-lens < 4 (4.0 removed HookedTransformer); skipped without them. Run it in a separate
environment (see README, "Export"):  pytest tests/test_export_tl.py
Tolerance: float32 on CPU, |Δ| <= 1e-5 absolute + 1e-4 relative on logits, on every hook_pattern and on every other
block site both caches hold (q, k, v, attn_scores where unmasked, z, attn_out, resid_pre / mid / post, mlp sites).
"""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
tl = pytest.importorskip("transformer_lens")
try:
    from transformer_lens import HookedTransformer, HookedTransformerConfig
except ImportError:  # TransformerLens 4 raises ImportError for the removed class
    pytest.skip("transformer-lens >= 4 has no HookedTransformer; install transformer-lens < 4", allow_module_level=True)
from safetensors.torch import load_file  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")

from mesalab.export.transformer_lens import layer_norm_eps, tl_config, write_model  # noqa: E402
from mesalab.models import Transformer, TransformerConfig, run  # noqa: E402

ATOL, RTOL = 1e-5, 1e-4
POS = 6

# Every mapping in one of three models: embeddings, learned / concatenated / added sinusoidal positions, LayerNorm,
# gelu and relu MLPs, attention-only, no output projection, damping, causal and bidirectional, scaled or not.
CONFIGS = {
    "full": TransformerConfig(d_model=8, n_layers=2, n_heads=2, d_head=4, attention="softmax", d_mlp=16,
                              layer_norm=True, d_in=3, d_out=2, pos_embedding="learned", max_len=POS, init_scale=0.5),
    "attn_only": TransformerConfig(d_model=12, n_layers=2, n_heads=2, d_head=6, attention="softmax", causal=False,
                                   out_proj=False, pos_embedding="concat_sinusoidal", pos_dim=4, residual_scale=0.5,
                                   init_scale=0.5),
    "relu": TransformerConfig(d_model=8, n_layers=1, n_heads=4, d_head=2, attention="softmax", d_mlp=8,
                              mlp_activation="relu", pos_embedding="sinusoidal", scale_scores="none", d_in=5,
                              init_scale=0.5),
}


def load_tl(model, tmp_path, name):
    """Export `model` to files, then build a HookedTransformer from them as a user would."""
    cfg = tl_config(model.cfg, POS, eps=layer_norm_eps(model))
    (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    path = write_model(model, tmp_path, name, POS)
    tl_model = HookedTransformer(HookedTransformerConfig(**json.loads((tmp_path / f"{name}.json").read_text()),
                                                         device="cpu"))
    state = load_file(str(path))
    missing, unexpected = tl_model.load_state_dict(state, strict=False)
    buffers = (".mask", ".IGNORE", ".rotary_sin", ".rotary_cos")  # computed by TransformerLens, not exported
    assert not unexpected and all(k.endswith(buffers) for k in missing), (missing, unexpected)
    tl_model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                         fold_value_biases=False)
    return tl_model.eval()


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - b.detach().numpy())))


def summary(diffs):
    """The largest |Δ| on logits, on attention patterns and on any site (printed with -s)."""
    return {"logits": diffs["logits"], "pattern": max(v for k, v in diffs.items() if k.endswith("hook_pattern")),
            "any site": max(diffs.values()), "sites": len(diffs) - 1}


def compare(model, tl_model, x, tl_input, **kwargs):
    """Logits, every layer's hook_pattern, and every other block site that both caches hold; returns the largest
    absolute difference of each."""
    out, cache = run(model, x, sites="blocks.*")
    with torch.no_grad():
        logits, tl_cache = tl_model.run_with_cache(tl_input, **kwargs)
    np.testing.assert_allclose(logits.numpy(), np.asarray(out), atol=ATOL, rtol=RTOL)
    diffs = {"logits": max_diff(out, logits)}
    for layer in range(model.cfg.n_layers):
        pattern = np.asarray(cache[f"blocks.{layer}.attn.hook_pattern"])
        uniform = pattern.max(-1, keepdims=True) * (pattern > 0)
        assert np.abs(pattern - uniform).max() > 0.05, "patterns near uniform: the comparison would prove little"
    for site, ours in cache.items():
        if site not in tl_cache.cache_dict:
            continue
        theirs, ours = tl_cache[site].numpy(), np.asarray(ours)
        if site.endswith("hook_attn_scores"):  # masked entries: −inf in TransformerLens, the float32 minimum here
            ours = np.where(np.isfinite(theirs), ours, theirs)
        if site.endswith("hook_attn_out"):  # TransformerLens's W_O carries the damping
            ours = ours * model.blocks[int(site.split(".")[1])].residual_scale
        np.testing.assert_allclose(theirs, ours, atol=ATOL, rtol=RTOL, err_msg=site)
        finite = np.isfinite(theirs)
        diffs[site] = float(np.max(np.abs(theirs[finite] - ours[finite])))
    assert all(f"blocks.{layer}.attn.hook_pattern" in diffs for layer in range(model.cfg.n_layers))
    return diffs


@pytest.mark.parametrize("name", list(CONFIGS))
def test_vectors_through_start_at_layer(name, tmp_path):
    model = Transformer(CONFIGS[name], key=jax.random.PRNGKey(3))
    tl_model = load_tl(model, tmp_path, name)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (3, POS, model.cfg.input_width)))
    xt = torch.from_numpy(x.copy())
    resid = xt @ tl_model.W_E + tl_model.W_pos[:POS]
    diffs = compare(model, tl_model, x, resid, start_at_layer=0)
    print(name, "vectors", summary(diffs))


@pytest.mark.parametrize("name", ["full", "attn_only"])
def test_one_hot_inputs_are_token_ids(name, tmp_path):
    model = Transformer(CONFIGS[name], key=jax.random.PRNGKey(5))
    tl_model = load_tl(model, tmp_path, name)
    tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(6), (3, POS), 0, model.cfg.input_width))
    x = np.asarray(jax.nn.one_hot(tokens, model.cfg.input_width))
    diffs = compare(model, tl_model, x, torch.from_numpy(tokens.copy()).long())
    print(name, "tokens", summary(diffs))


def test_exported_run_loads_as_written(tmp_path):
    """`export_run` output of a trained run: each member from its own file and the part's config.json."""
    from test_export import SOFTMAX, TASK, make_run

    from mesalab.config import override
    from mesalab.export.transformer_lens import export_run
    from mesalab.train.engine import load_models, member_of

    # A larger init than the default 0.02 (and 2 steps of training), so that the patterns are far from uniform.
    run_dir = make_run(tmp_path, parts=(("heads", override(SOFTMAX, init_scale=0.5)),))
    out = export_run(run_dir).out
    models = load_models(run_dir / "checkpoints" / "heads")
    batch = TASK.sample(jax.random.PRNGKey(8), 4)
    tokens = torch.from_numpy(np.asarray(batch.inputs).argmax(-1)).long()
    for i in range(2):
        cfg = HookedTransformerConfig(**json.loads((out / "heads" / "config.json").read_text()), device="cpu")
        tl_model = HookedTransformer(cfg)
        tl_model.load_and_process_state_dict(load_file(str(out / "heads" / f"member-{i}.safetensors")), fold_ln=False,
                                             center_writing_weights=False, center_unembed=False,
                                             fold_value_biases=False)
        diffs = compare(member_of(models, i), tl_model.eval(), np.asarray(batch.inputs), tokens)
        print("run member", i, summary(diffs))


def test_rotary_positions(tmp_path):
    """pos_embedding = "rope" (adjacent pairs) is TransformerLens's rotary embedding with rotary_adjacent_pairs."""
    cfg = TransformerConfig(d_model=8, n_layers=2, n_heads=2, d_head=4, attention="softmax", d_mlp=8, layer_norm=True,
                            d_in=3, pos_embedding="rope", rope_base=100.0, init_scale=0.5)
    model = Transformer(cfg, key=jax.random.PRNGKey(9))
    tl_model = load_tl(model, tmp_path, "rope")
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(10), (3, POS, 3)))
    diffs = compare(model, tl_model, x, torch.from_numpy(x.copy()) @ tl_model.W_E, start_at_layer=0)
    assert "blocks.1.attn.hook_rot_q" in diffs and "blocks.1.attn.hook_rot_k" in diffs
    print("rope vectors", summary(diffs))
