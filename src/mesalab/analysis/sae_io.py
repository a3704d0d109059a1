"""SAEs on disk in SAELens's layout, so SAELens tools (`SAE.load_from_disk(folder)`) open them
(/work/shared/reference/induction.md §5.4; SAELens ≥ 6 `saes/sae.py`: SAEConfig.to_dict, SAEMetadata, save_model;
`loading/pretrained_sae_loaders.py`: sae_lens_disk_loader, handle_config_defaulting, handle_pre_6_0_config).

A folder per SAE holds

    cfg.json                 SAELens 6's layout (what its `save_model` writes): the SAEConfig fields at the top level
                             (d_in, d_sae, dtype, device, apply_b_dec_to_input, normalize_activations,
                             reshape_activations = "hook_z" for hook_z sites), architecture "standard", and
                             "metadata" {sae_lens_version, hook_name, model_name, hook_head_index, context_size,
                             prepend_bos, ...; "mesalab": how it was trained}
    sae_weights.safetensors  W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]

metadata.sae_lens_version is the layout's version (SAELENS_LAYOUT), not a SAELens install: SAELens's loader reads
it to choose its ≥ 6 path, which takes the file as written (SAEConfig.from_dict keeps the config fields and the
whole metadata); a file without it would take the pre-6.0 path, which re-derives the metadata from flat keys.
`read_sae` reads both this layout and the flat pre-6 one (hook_name at the top level). Hook names keep mesalab's
site names, which are TransformerLens's (`blocks.1.attn.hook_z`). Both files are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from safetensors.numpy import load_file, save_file

from mesalab.analysis.sae import SAE
from mesalab.store import atomic_write, write_json

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")


SAELENS_LAYOUT = "6.0.0"  # the cfg.json layout written (SAELens ≥ 6: config fields at the top, the rest in metadata)


def sae_lens_config(sae: SAE, hook_name: str, *, model_name: str = "mesalab", context_size: int | None = None,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The cfg.json of one SAE. extra: mesalab's own record (λ, seed, steps, …), stored as metadata["mesalab"]."""
    return {
        "d_in": int(sae.d_in),
        "d_sae": int(sae.d_sae),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "hook_z" if hook_name.endswith("hook_z") else "none",
        "architecture": "standard",
        "metadata": {
            "sae_lens_version": SAELENS_LAYOUT,
            "sae_lens_training_version": None,
            "model_name": model_name,
            "hook_name": hook_name,
            "hook_head_index": None,
            "context_size": context_size,
            "prepend_bos": False,
            "dataset_path": "",
            "dataset_trust_remote_code": False,
            "model_from_pretrained_kwargs": {},
            "seqpos_slice": [None],
            "neuronpedia_id": None,
            "mesalab": dict(extra or {}),
        },
    }


def hook_name_of(cfg: Mapping[str, Any]) -> str | None:
    """The hook name of a cfg.json in either layout (SAELens ≥ 6: under metadata; before: at the top level)."""
    return cfg.get("metadata", {}).get("hook_name", cfg.get("hook_name", cfg.get("hook_point")))


def write_sae(folder: str | Path, sae: SAE, hook_name: str, **cfg: Any) -> Path:
    """Write one SAE (no member axis) to `folder` in SAELens's layout; cfg: see `sae_lens_config`."""
    folder = Path(folder)
    if sae.W_enc.ndim != 2:
        raise ValueError(f"write_sae takes one SAE; W_enc has shape {tuple(sae.W_enc.shape)} (use write_ensemble "
                         "for a stacked ensemble)")
    arrays = {n: np.ascontiguousarray(np.asarray(getattr(sae, n), np.float32)) for n in WEIGHT_NAMES}
    atomic_write(folder / WEIGHTS_FILENAME, lambda tmp: save_file(arrays, str(tmp)))
    write_json(folder / CFG_FILENAME, sae_lens_config(sae, hook_name, **cfg))
    return folder


def write_ensemble(root: str | Path, saes: SAE, hook_name: str, members: Sequence[tuple[float, int]], *,
                   extra: Mapping[str, Any] | None = None, **cfg: Any) -> list[Path]:
    """One folder per member under `root`, named `l1_<λ>-seed_<s>`; each cfg.json's "mesalab" records l1 and seed."""
    out = []
    for i, (l1, seed) in enumerate(members):
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], saes)
        record = {**dict(extra or {}), "l1_coeff": l1, "seed": seed, "member": i}
        out.append(write_sae(Path(root) / f"l1_{l1:g}-seed_{seed}", one, hook_name, extra=record, **cfg))
    return out


def read_sae(folder: str | Path) -> tuple[SAE, dict[str, Any]]:
    """(SAE, cfg dict) from a SAELens-layout folder; checks that the shapes match d_in and d_sae."""
    folder = Path(folder)
    cfg = json.loads((folder / CFG_FILENAME).read_text())
    if cfg.get("architecture", "standard") != "standard":
        raise ValueError(f"{folder}: architecture {cfg['architecture']!r}; only 'standard' SAEs are read")
    arrays = load_file(str(folder / WEIGHTS_FILENAME))
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    want = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for name, shape in want.items():
        if name not in arrays or arrays[name].shape != shape:
            got = arrays[name].shape if name in arrays else "missing"
            raise ValueError(f"{folder / WEIGHTS_FILENAME}: {name} is {got}, expected {shape} from cfg.json")
    return SAE(*(jax.numpy.asarray(arrays[n]) for n in WEIGHT_NAMES)), cfg
