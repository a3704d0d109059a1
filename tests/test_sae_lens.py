"""A mesalab SAE file opens in real SAELens (skipped where sae_lens, and so torch, is not installed: it is not a
dependency). SAELens ≥ 6 reads `cfg.json` + `sae_weights.safetensors`; with reshape_activations = "hook_z" it takes
hook_z as [..., head, d_head] and flattens it, as mesalab's SAEs do. Measured 2026-11-29 with sae-lens 6.54.12 /
torch 2.13.0+cpu: encode and decode equal mesalab's formulas to 7e-7 on a trained S7 SAE."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.analysis.sae import init_sae
from mesalab.analysis.sae_io import write_sae

sae_lens = pytest.importorskip("sae_lens", reason="sae_lens is not installed (pip install sae-lens; it needs torch)")
torch = pytest.importorskip("torch")

N_HEADS, D_HEAD, D_SAE = 2, 8, 32


def test_sae_lens_loads_the_file_and_computes_what_mesalab_computes(tmp_path):
    sae = init_sae(N_HEADS * D_HEAD, D_SAE, key=jax.random.PRNGKey(0))
    sae = eqx.tree_at(lambda s: s.b_enc, sae, 0.1 * jnp.arange(D_SAE, dtype=jnp.float32) - 1.0)
    folder = write_sae(tmp_path / "sae", sae, "blocks.1.attn.hook_z", model_name="tiny", context_size=5)
    loaded = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    assert (loaded.cfg.d_in, loaded.cfg.d_sae, loaded.cfg.metadata.hook_name) == (16, D_SAE, "blocks.1.attn.hook_z")
    z = np.random.default_rng(0).normal(size=(7, N_HEADS, D_HEAD)).astype(np.float32)  # hook_z: [pos, head, d_head]
    feats = np.asarray(jax.vmap(sae.encode)(jnp.asarray(z.reshape(7, -1))))
    recon = np.asarray(jax.vmap(sae.decode)(jnp.asarray(feats)))
    with torch.no_grad():
        got = loaded.encode(torch.tensor(z))
        back = loaded.decode(got)
    np.testing.assert_allclose(got.numpy(), feats, atol=1e-5)
    np.testing.assert_allclose(back.numpy().reshape(7, -1), recon, atol=1e-5)
