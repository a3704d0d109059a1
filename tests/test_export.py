"""Export to TransformerLens files, read back without torch: names, shapes, values, config JSON, manifest, errors.
The round trip through TransformerLens itself is tests/test_export_tl.py (needs torch and transformer-lens < 4)."""

import functools
import json
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file
from typer.testing import CliRunner

from mesalab.cli import app
from mesalab.config import override
from mesalab.export.transformer_lens import ExportError, check_exportable, export_run, state_dict, tl_config
from mesalab.models import Transformer, TransformerConfig
from mesalab.tasks import CopyingConfig
from mesalab.train import TrainConfig, Trainer
from mesalab.train.engine import load_models

runner = CliRunner(env={"COLUMNS": "300"})
TASK = CopyingConfig(n_items=4, n_labels=2, n_pairs=2)  # one-hot tokens over a vocabulary of 6; 5 positions
SOFTMAX = TransformerConfig(d_model=8, n_layers=2, n_heads=2, d_head=4, attention="softmax", d_mlp=12, layer_norm=True,
                            d_in=6, d_out=6, pos_embedding="learned", max_len=5)
LINEAR = override(SOFTMAX, attention="linear")


def make_run(root, parts=(("heads", SOFTMAX), ("lsa", LINEAR))):
    """A run folder whose parts each hold 2 members trained for 2 steps ('heads' maps, 'lsa' does not)."""
    train = TrainConfig(steps=2, batch_size=8, chunk_steps=2, eval_batch_size=0)
    for part, cfg in parts:
        Trainer(TASK, functools.partial(Transformer, cfg), train).fit(
            [3, 7], checkpoint_dir=root / "checkpoints" / part, progress=False)
    (root / "run.json").write_text(json.dumps({"study": "tiny"}))
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run"))
    res = runner.invoke(app, ["export", str(run), "--to", "transformer-lens"])
    assert res.exit_code == 0, res.output
    return run, run / "export" / "transformer-lens", res.output


def expected_shapes(cfg: TransformerConfig, n_ctx: int) -> dict[str, tuple[int, ...]]:
    """HookedTransformer's parameter names and shapes (TransformerLens 3.x, without its mask buffers)."""
    m, h, d = cfg.d_model, cfg.n_heads, cfg.d_head
    shapes = {"embed.W_E": (cfg.input_width, m), "pos_embed.W_pos": (n_ctx, m),
              "unembed.W_U": (m, cfg.output_width), "unembed.b_U": (cfg.output_width,)}
    norms = (["ln1"] + (["ln2"] if cfg.d_mlp else [])) if cfg.layer_norm else []
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}."
        shapes |= {p + f"attn.W_{x}": (h, m, d) for x in "QKV"} | {p + f"attn.b_{x}": (h, d) for x in "QKV"}
        shapes |= {p + "attn.W_O": (h, d, m), p + "attn.b_O": (m,)}
        shapes |= {p + f"{n}.{x}": (m,) for n in norms for x in "wb"}
        if cfg.d_mlp:
            shapes |= {p + "mlp.W_in": (m, cfg.d_mlp), p + "mlp.b_in": (cfg.d_mlp,), p + "mlp.W_out": (cfg.d_mlp, m),
                       p + "mlp.b_out": (m,)}
    if cfg.layer_norm:
        shapes |= {"ln_final.w": (m,), "ln_final.b": (m,)}
    return shapes


def test_run_export_writes_each_member_with_transformer_lens_names(exported):
    run, out, output = exported
    assert "heads: 2 member(s)" in output and "skipped lsa" in output and "TransformerConfig.attention" in output
    models = load_models(run / "checkpoints" / "heads")
    for i, seed in enumerate((3, 7)):
        path = out / "heads" / f"member-{i}.safetensors"
        arrays = load_file(str(path))
        assert {k: v.shape for k, v in arrays.items()} == expected_shapes(SOFTMAX, 5)
        assert all(v.dtype == np.float32 for v in arrays.values())
        np.testing.assert_array_equal(arrays["blocks.1.attn.W_Q"], np.asarray(models.blocks[1].attn.W_Q[i]))
        np.testing.assert_array_equal(arrays["blocks.0.mlp.W_out"], np.asarray(models.blocks[0].mlp.W_out[i]))
        np.testing.assert_array_equal(arrays["ln_final.w"], np.asarray(models.ln_final.weight[i]))
        np.testing.assert_array_equal(arrays["embed.W_E"], np.asarray(models.W_E[i]))
        np.testing.assert_array_equal(arrays["pos_embed.W_pos"], np.asarray(models.W_pos[i]))
        np.testing.assert_array_equal(arrays["unembed.W_U"], np.asarray(models.W_U[i]))
        assert not arrays["blocks.0.attn.b_Q"].any() and not arrays["unembed.b_U"].any()
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads(f.metadata()["mesalab"])
        assert meta | {"run": None} == {"run": None, "study": "tiny", "part": "heads", "member": i, "seed": seed,
                                        "step": 2, "readout_start": 0, "readout_size": 6, "readout_sign": 1.0,
                                        "input_width": 6}
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # written by store.atomic_write
    assert not (out / "lsa").exists()


def test_run_export_config_and_manifest(exported):
    _, out, _ = exported
    cfg = json.loads((out / "heads" / "config.json").read_text())
    assert cfg == {
        "model_name": "mesalab-tiny-heads", "d_model": 8, "d_head": 4, "n_heads": 2, "n_layers": 2, "n_ctx": 5,
        "d_vocab": 6, "d_vocab_out": 6, "d_mlp": 12, "attn_only": False, "act_fn": "gelu_new",
        "normalization_type": "LN", "eps": 1e-5, "positional_embedding_type": "standard", "attention_dir": "causal",
        "use_attn_scale": True, "default_prepend_bos": False,
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "transformer-lens" and manifest["requires"].endswith("<4")
    assert [m["file"] for m in manifest["parts"]["heads"]["members"]] == ["heads/member-0.safetensors",
                                                                          "heads/member-1.safetensors"]
    assert [m["seed"] for m in manifest["parts"]["heads"]["members"]] == [3, 7]
    assert "'linear'" in manifest["skipped"]["lsa"] and "allowed: 'softmax'" in manifest["skipped"]["lsa"]


def test_naming_a_part_that_does_not_map_is_an_error(exported):
    run, _, _ = exported
    res = runner.invoke(app, ["export", str(run), "--to", "transformer-lens", "--part", "lsa", "--out",
                              str(run / "other")])
    assert res.exit_code == 2
    assert "TransformerConfig.attention = 'linear'" in res.output and "allowed: 'softmax'" in res.output
    assert not (run / "other").exists()
    res = runner.invoke(app, ["export", str(run), "--to", "pytorch"])
    assert res.exit_code == 2 and "'transformer-lens'" in res.output
    res = runner.invoke(app, ["export", str(run), "--to", "transformer-lens", "--part", "nope"])
    assert res.exit_code == 2 and "'heads'" in res.output


def test_a_run_where_nothing_maps_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        export_run(tmp_path)
    run = make_run(tmp_path, parts=(("lsa", LINEAR),))
    with pytest.raises(ExportError, match="nothing in .* can be exported") as err:
        export_run(run)
    assert "part 'lsa': TransformerConfig.attention = 'linear'" in str(err.value)


@pytest.mark.parametrize("change, field", [
    ({"attention": "mesa"}, "TransformerConfig.attention = 'mesa'"),
    ({"attention": ("softmax", "linear")}, "TransformerConfig.attention = ('softmax', 'linear')"),
    ({"keys_from": "context", "causal": False}, "TransformerConfig.keys_from = 'context'; allowed: 'all'"),
    ({"classifier_layers": 2}, "TransformerConfig.classifier_layers = 2; allowed: 0"),
    ({"clip": 1.5}, "TransformerConfig.clip = 1.5; allowed: 0.0"),
    ({"d_input_mlp": 4}, "TransformerConfig.d_input_mlp = 4; allowed: 0"),
])
def test_what_does_not_map_names_field_value_and_allowed(change, field):
    with pytest.raises(ExportError, match="cannot export to TransformerLens") as err:
        check_exportable(override(SOFTMAX, **change))
    assert field in str(err.value)


def test_attention_only_identity_embedding_and_concatenated_positions():
    import jax

    cfg = TransformerConfig(d_model=12, n_layers=1, n_heads=2, d_head=6, attention="softmax", causal=False,
                            out_proj=False, pos_embedding="concat_sinusoidal", pos_dim=4, residual_scale=0.5,
                            scale_scores="none")
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    with pytest.raises(ExportError, match="n_ctx = None; allowed: a positive integer"):
        state_dict(model)
    arrays = state_dict(model, n_ctx=7)
    assert {k: v.shape for k, v in arrays.items()} == expected_shapes(cfg, 7)
    np.testing.assert_array_equal(arrays["embed.W_E"], np.eye(8, 12))  # tokens fill the first 8 features
    assert not arrays["pos_embed.W_pos"][:, :8].any() and arrays["pos_embed.W_pos"][:, 8:].any()
    np.testing.assert_allclose(arrays["blocks.0.attn.W_O"].reshape(12, 12), 0.5 * np.eye(12))  # damping folded in
    tl = tl_config(cfg, 7)
    assert tl["attn_only"] and tl["act_fn"] is None and tl["d_mlp"] is None and tl["normalization_type"] is None
    assert tl["attention_dir"] == "bidirectional" and tl["use_attn_scale"] is False and tl["d_vocab"] == 8


def test_rotary_positions_become_transformer_lens_rotary():
    import jax

    cfg = override(SOFTMAX, pos_embedding="rope", max_len=0)
    arrays = state_dict(Transformer(cfg, key=jax.random.PRNGKey(0)), n_ctx=5)
    assert {k: v.shape for k, v in arrays.items()} == {k: v for k, v in expected_shapes(cfg, 5).items()
                                                       if k != "pos_embed.W_pos"}
    tl = tl_config(cfg, 5)
    assert (tl["positional_embedding_type"], tl["rotary_dim"], tl["rotary_base"], tl["rotary_adjacent_pairs"]) == (
        "rotary", 4, 10000, True)
