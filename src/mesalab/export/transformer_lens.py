"""Export trained models to TransformerLens: HookedTransformer state dicts and configs, written without torch.

`mesalab export RUN --to transformer-lens` writes, under RUN/export/transformer-lens/ (or --out):

    <part>/config.json              HookedTransformerConfig keyword arguments (shared by the part's members)
    <part>/member-<i>.safetensors   member i's weights under HookedTransformer names and shapes
    manifest.json                   per part: files, seeds, training step, read-out, and the parts left out and why

What maps. A `Transformer` with softmax attention in every layer — attention-only or with MLPs, with or without
pre-LayerNorm, causal or bidirectional — is exactly a HookedTransformer (TransformerLens 3.x; 4.0 removed it):

    mesalab                                 TransformerLens
    x @ W_E  (identity without d_in)        embed.W_E [d_vocab = input width, d_model]; zero columns where a
                                            concatenated position code goes
    positions: learned / sinusoidal /       pos_embed.W_pos [n_ctx, d_model], positional_embedding_type "standard":
      concat_sinusoidal / none              the table itself, its code in the last pos_dim columns, or zeros
    rope (adjacent pairs, rope_base)        positional_embedding_type "rotary", rotary_dim = d_head, rotary_base,
                                            rotary_adjacent_pairs; no pos_embed (hook_rot_q / hook_rot_k agree)
    ln1, ln2, ln_final (eqx LayerNorm)      blocks.{l}.ln1.w/b, ln2.w/b, ln_final.w/b; normalization_type "LN", eps
    attn.W_Q, W_K, W_V [head, d_model, d]   blocks.{l}.attn.W_Q, W_K, W_V (same shapes); b_Q, b_K, b_V = 0
    attn W_O (identity split without        blocks.{l}.attn.W_O [head, d_head, d_model], times residual_scale;
      out_proj)                             b_O = 0
    scores / √d_head (scale_scores)         use_attn_scale (TransformerLens divides by √d_head)
    causal mask                             attention_dir "causal" or "bidirectional"
    mlp.W_in, b_in, W_out, b_out            blocks.{l}.mlp.* (same shapes); act_fn "gelu_new" for mesalab's "gelu"
                                            (jax.nn.gelu is the tanh form), "relu"; d_mlp = 0 is attn_only
    W_U (identity without d_out)            unembed.W_U [d_model, d_vocab_out]; b_U = 0

Every block site then agrees to float32 round-off (hook_resid_pre/mid/post, hook_q/k/v, hook_pattern, hook_z,
hook_mlp_out, mlp.hook_pre/post; tests/test_export_tl.py), with three differences: hook_attn_scores holds −inf at
masked entries where mesalab holds the float32 minimum; hook_attn_out is mesalab's times residual_scale (1 unless a
study damps an iterated layer); an attention-only HookedTransformer has no hook_resid_mid. The read-out is not part
of the model: the prediction is readout_sign · logits[..., readout_start : readout_start + readout_size], given in
the manifest and in each file's metadata.

Inputs. mesalab models read vectors x [pos, input width]. One-hot inputs (the copying tasks) are token ids to
TransformerLens: `model(tokens)` is the mesalab model on one_hot(tokens). Continuous inputs (regression, dynamics)
skip the embedding lookup: embed them as mesalab does and start at the first block —

    resid = x @ model.W_E + model.W_pos[: x.shape[1]]          # x: [batch, pos, input width]; no W_pos with rope
    logits, cache = model.run_with_cache(resid, start_at_layer=0)

(hook_embed and hook_pos_embed are then not run; every block site is. With token ids TransformerLens's hook_embed is
[pos, d_model], zero where a concatenated position code goes.) Load a member (TransformerLens 3.x) with

    cfg = HookedTransformerConfig(**json.load(open("config.json")))
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(safetensors.torch.load_file("member-0.safetensors"), fold_ln=False,
        center_writing_weights=False, center_unembed=False, fold_value_biases=False)

(the defaults fold and centre weights, which keeps the log-probabilities but moves logits and sites).

What does not map, with an error naming the field: linear or mesa attention (TransformerLens has only softmax) and
the other sequence mixers (lstm, ssm, ngram<k> layers; `problems` refuses every kind but softmax), keys
that exclude the query token (keys_from = "context"), the classifier layers after ln_final, residual-stream
clipping, the input MLP, and any positional encoding not listed above. n_ctx is max_len for learned positions;
otherwise `n_ctx`, else the task's sequence length from the checkpoint (any n_ctx works: sinusoidal and rotary codes
do not depend on it).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mesalab.config import ConfigError, from_dict
from mesalab.models.config import TransformerConfig

CHECKPOINT_NAME = "checkpoint.safetensors"  # train.engine.CHECKPOINT_NAME, without importing the engine
ACT_FN = {"gelu": "gelu_new", "relu": "relu"}  # jax.nn.gelu defaults to the tanh approximation = TL's gelu_new
# What each positional encoding becomes: a "standard" table pos_embed.W_pos, or TransformerLens's rotary embedding.
POSITIONS = ("none", "learned", "sinusoidal", "concat_sinusoidal", "rope")
TL_VERSIONS = "transformer-lens>=3.0,<4"  # 4.0 removed HookedTransformer; 2.x pins numpy < 2


class ExportError(ConfigError):
    """A model that the target format cannot express; the message names the config field, its value and what is
    allowed."""


def problems(cfg: TransformerConfig) -> list[str]:
    """Why `cfg` cannot be a HookedTransformer, one message per field (empty when it maps)."""
    out = []
    bad = sorted({k for k in cfg.layer_kinds if k != "softmax"})
    if bad:
        out.append(f"TransformerConfig.attention = {cfg.attention!r} has {' and '.join(map(repr, bad))} layers; "
                   "allowed: 'softmax' in every layer (TransformerLens has only softmax attention)")
    checks = (
        ("pos_embedding", cfg.pos_embedding in POSITIONS, ", ".join(map(repr, POSITIONS))),
        ("mlp_activation", cfg.d_mlp == 0 or cfg.mlp_activation in ACT_FN, ", ".join(map(repr, ACT_FN))),
        ("keys_from", cfg.keys_from == "all", "'all' (TransformerLens cannot hide the query token's key)"),
        ("classifier_layers", cfg.classifier_layers == 0,
         "0 (TransformerLens has no layers between ln_final and the unembedding)"),
        ("clip", cfg.clip == 0, "0.0 (TransformerLens does not clip the residual stream)"),
        ("d_input_mlp", cfg.d_input_mlp == 0, "0 (a TransformerLens embedding is a lookup table, not an MLP)"),
    )
    out += [f"TransformerConfig.{f} = {getattr(cfg, f)!r}; allowed: {allowed}" for f, ok, allowed in checks if not ok]
    return out


def check_exportable(cfg: TransformerConfig) -> None:
    """Raise ExportError naming every field that keeps `cfg` from being a HookedTransformer."""
    found = problems(cfg)
    if found:
        raise ExportError("cannot export to TransformerLens: " + "; ".join(found))


def context_length(cfg: TransformerConfig, n_ctx: int | None) -> int:
    """TransformerLens's n_ctx: max_len for learned positions, else `n_ctx` (which must then be given)."""
    if cfg.pos_embedding == "learned":
        return cfg.max_len
    if not (isinstance(n_ctx, int) and n_ctx > 0):
        raise ExportError(f"n_ctx = {n_ctx!r}; allowed: a positive integer (the longest sequence the exported model "
                          f"will read; TransformerConfig.pos_embedding = {cfg.pos_embedding!r} has no table length)")
    return n_ctx


def tl_config(cfg: TransformerConfig, n_ctx: int | None = None, *, eps: float = 1e-5,
              model_name: str = "mesalab") -> dict[str, Any]:
    """HookedTransformerConfig keyword arguments (JSON-ready) for a model built from `cfg`.
    n_ctx: the table length for positions that are not learned; eps: the LayerNorms' ε."""
    check_exportable(cfg)
    mlp, rotary = cfg.d_mlp > 0, cfg.pos_embedding == "rope"
    return {
        "model_name": model_name, "d_model": cfg.d_model, "d_head": cfg.d_head, "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers, "n_ctx": context_length(cfg, n_ctx), "d_vocab": cfg.input_width,
        "d_vocab_out": cfg.output_width, "d_mlp": cfg.d_mlp if mlp else None, "attn_only": not mlp,
        "act_fn": ACT_FN[cfg.mlp_activation] if mlp else None,
        "normalization_type": "LN" if cfg.layer_norm else None, "eps": eps,
        "positional_embedding_type": "rotary" if rotary else "standard",
        "attention_dir": "causal" if cfg.causal else "bidirectional",
        "use_attn_scale": cfg.scale_scores != "none", "default_prepend_bos": False,
        # mesalab's rope turns adjacent pairs by p·base^(−2j/d_head) (GPT-J style; TransformerLens's default is halves)
        **({"rotary_dim": cfg.d_head, "rotary_base": _number(cfg.rope_base), "rotary_adjacent_pairs": True}
           if rotary else {}),
    }


def _number(x: float) -> int | float:
    """An integral float as an int (TransformerLens 3.0 declares rotary_base an int)."""
    return int(x) if float(x).is_integer() else float(x)


def position_table(model, n_ctx: int) -> np.ndarray:
    """pos_embed.W_pos [n_ctx, d_model]: what mesalab adds to (or concatenates with) the embedded tokens."""
    from mesalab.models.transformer import sinusoidal_positions

    cfg = model.cfg
    table = np.zeros((n_ctx, cfg.d_model), np.float32)
    if cfg.pos_embedding == "learned":
        table[:] = np.asarray(model.W_pos)
    elif cfg.pos_embedding == "sinusoidal":
        table[:] = sinusoidal_positions(n_ctx, cfg.d_model)
    elif cfg.pos_embedding == "concat_sinusoidal":
        table[:, cfg.token_width:] = sinusoidal_positions(n_ctx, cfg.pos_dim)
    return table


def layer_norm_eps(model) -> float:
    norms = [m for m in (model.ln_final, *(b.ln1 for b in model.blocks)) if m is not None]
    return float(norms[0].eps) if norms else 1e-5


def state_dict(model, n_ctx: int | None = None) -> dict[str, np.ndarray]:
    """One (unstacked) `Transformer` as a HookedTransformer state dict of float32 NumPy arrays (no buffers)."""
    cfg = model.cfg
    check_exportable(cfg)
    n_ctx = context_length(cfg, n_ctx)
    arr = lambda a: np.asarray(a, np.float32)  # noqa: E731
    W_E = np.zeros((cfg.input_width, cfg.d_model), np.float32)
    W_E[:, : cfg.token_width] = arr(model.W_E) if model.W_E is not None else np.eye(cfg.token_width)
    sd = {"embed.W_E": W_E}
    if cfg.pos_embedding != "rope":  # a rotary HookedTransformer has no pos_embed; its sin/cos tables are buffers
        sd["pos_embed.W_pos"] = position_table(model, n_ctx)
    zeros = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731

    def norm(name: str, ln) -> None:
        sd[name + ".w"], sd[name + ".b"] = arr(ln.weight), arr(ln.bias)

    for layer, block in enumerate(model.blocks):
        p, attn = f"blocks.{layer}.", block.attn
        if block.ln1 is not None:
            norm(p + "ln1", block.ln1)
        for name in ("W_Q", "W_K", "W_V"):
            sd[p + "attn." + name] = arr(getattr(attn, name))
            sd[p + "attn.b_" + name[-1]] = zeros(cfg.n_heads, cfg.d_head)
        # TransformerLens adds attn_out to the stream as it is; mesalab damps it by residual_scale first.
        sd[p + "attn.W_O"] = arr(attn.output_matrix) * np.float32(block.residual_scale)
        sd[p + "attn.b_O"] = zeros(cfg.d_model)
        if block.mlp is not None:
            if block.ln2 is not None:
                norm(p + "ln2", block.ln2)
            for name in ("W_in", "b_in", "W_out", "b_out"):
                sd[p + "mlp." + name] = arr(getattr(block.mlp, name))
    if model.ln_final is not None:
        norm("ln_final", model.ln_final)
    sd["unembed.W_U"] = arr(model.W_U) if model.W_U is not None else np.eye(cfg.d_model, dtype=np.float32)
    sd["unembed.b_U"] = zeros(cfg.output_width)
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def readout(cfg: TransformerConfig) -> dict[str, Any]:
    """How mesalab reads its prediction from the logits (not part of a HookedTransformer)."""
    s = cfg.prediction_slice
    return {"readout_start": s.start, "readout_size": s.stop - s.start, "readout_sign": cfg.readout_sign}


def write_model(model, folder: str | Path, name: str, n_ctx: int | None = None,
                metadata: dict[str, Any] | None = None) -> Path:
    """Write one model's state dict to folder/<name>.safetensors (atomically) and return the path; its metadata holds
    `metadata`, the read-out and the input width as JSON under "mesalab"."""
    from safetensors.numpy import save_file

    from mesalab.store import atomic_write

    meta = {**(metadata or {}), **readout(model.cfg), "input_width": model.cfg.input_width}
    arrays = state_dict(model, n_ctx)
    path = Path(folder) / f"{name}.safetensors"
    atomic_write(path, lambda tmp: save_file(arrays, str(tmp), metadata={"format": "pt", "mesalab": json.dumps(meta)}))
    return path


@dataclasses.dataclass
class Export:
    """What `export_run` wrote: the output folder, the files per part, and the parts left out with the reason."""

    out: Path
    written: dict[str, list[Path]]
    skipped: dict[str, str]


def task_length(task: dict[str, Any] | None) -> int | None:
    """The sequence length of the task a checkpoint trained on (its config JSON), or None if it cannot tell."""
    from mesalab.tasks import TASKS

    classes = {c.__name__: c for c in TASKS.values()}
    if not task or task.get("type") not in classes:
        return None
    try:
        return int(from_dict(classes[task["type"]], {k: v for k, v in task.items() if k != "type"}).seq_len)
    except (ConfigError, TypeError, ValueError, AttributeError):
        return None


def checkpoints(run_dir: Path) -> dict[str, Path]:
    """Part name (its folder under checkpoints/) → checkpoint file, for every checkpoint of the run."""
    root = run_dir / "checkpoints"
    return {p.parent.relative_to(root).as_posix(): p for p in sorted(root.rglob(CHECKPOINT_NAME))}


def export_run(run_dir: str | Path, out: str | Path | None = None, parts: Sequence[str] = (),
               n_ctx: int | None = None) -> Export:
    """Export every member of every part of a run (or of `parts`) to TransformerLens files under `out` (default
    RUN/export/transformer-lens). Parts that do not map are skipped with their reason, unless named in `parts`,
    where they raise ExportError; so does a run in which nothing maps. n_ctx: see `context_length`."""
    from mesalab.store import read_json, write_json
    from mesalab.train import checkpoint
    from mesalab.train.engine import load_models, member_of

    run_dir = Path(run_dir)
    found = checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir} has no checkpoints (no checkpoints/*/{CHECKPOINT_NAME})")
    unknown = [p for p in parts if p not in found]
    if unknown:
        raise ExportError(f"part {unknown[0]!r} is not in {run_dir}; allowed: {', '.join(map(repr, found))}")
    out = Path(out) if out is not None else run_dir / "export" / "transformer-lens"
    study = read_json(run_dir / "run.json", {}).get("study")
    result, manifest = Export(out, {}, {}), {"format": "transformer-lens", "requires": TL_VERSIONS,
                                             "run": str(run_dir), "study": study, "parts": {}, "skipped": {}}
    for part, path in found.items():
        if parts and part not in parts:
            continue
        header = checkpoint.read_header(path)
        model_json = dict(header.get("model") or {})
        if model_json.pop("type", None) != "TransformerConfig":
            reason = "its model is not a mesalab Transformer (no TransformerConfig in the checkpoint)"
        else:
            cfg = from_dict(TransformerConfig, model_json)
            reason = "; ".join(problems(cfg))
        if not reason and cfg.pos_embedding != "learned" and not n_ctx and not task_length(header.get("task")):
            reason = "n_ctx is not known (no learned positions and no task sequence length); pass --n-ctx"
        if reason:
            if parts:
                raise ExportError(f"part {part!r} cannot be exported to TransformerLens: {reason}")
            result.skipped[part] = manifest["skipped"][part] = reason
            continue
        length = n_ctx or task_length(header.get("task"))
        models = load_models(path.parent)
        folder = out / part
        seeds = [int(m["seed"]) for m in header["members"]]
        files = [write_model(member_of(models, i), folder, f"member-{i}", length,
                             {"run": str(run_dir), "study": study, "part": part, "member": i, "seed": s,
                              "step": header.get("step")})
                 for i, s in enumerate(seeds)]
        config = tl_config(cfg, length, eps=layer_norm_eps(models), model_name=f"mesalab-{study or 'run'}-{part}")
        write_json(folder / "config.json", config)
        result.written[part] = files
        manifest["parts"][part] = {
            "config": f"{part}/config.json", "step": header.get("step"), **readout(cfg),
            "input_width": cfg.input_width, "n_ctx": config["n_ctx"],
            "members": [{"member": i, "seed": s, "file": f.relative_to(out).as_posix()}
                        for i, (s, f) in enumerate(zip(seeds, files))],
        }
    if not result.written:
        raise ExportError(f"nothing in {run_dir} can be exported to TransformerLens:\n"
                          + "\n".join(f"  part {p!r}: {r}" for p, r in result.skipped.items()))
    write_json(out / "manifest.json", manifest)
    return result
