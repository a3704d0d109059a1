"""A training run's checkpoint: what it holds, and the check that a resume continues the same run.

The file (train/checkpoint.py: safetensors + a JSON header) holds the ensemble's training state (weights, optimizer
state, data keys, alive flags), the history so far, and a header with every configuration that decides the numbers.
A resume whose header differs in any part is refused, naming the part; otherwise training continues from the stored
step and ends with the numbers of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import equinox as eqx
import jax
import numpy as np

from mesalab.config import to_json
from mesalab.train import checkpoint

FORMAT = 1


def run_header(trainer: Any, members: Sequence[Any], eval_seed: int, init: Any = None) -> dict[str, Any]:
    """Everything that decides a run's numbers: task, model, training config, members and a fingerprint of the rest."""
    model_cfg = getattr(trainer._static, "cfg", None)
    return {
        # What else decides the numbers, so that a resume with other interventions or losses is refused.
        "fingerprint": {
            "interventions": {k: [iv.kind, list(np.shape(iv.value)), digest(iv), *functions_of(iv)] for k, iv in
                              sorted(trainer.interventions.items())},
            "loss_fn": qualname(trainer.loss_fn), "metrics_fn": qualname(trainer.metrics_fn), "eval_seed": eval_seed,
            "model_factory": qualname(trainer.make_model) if model_cfg is None else None,
            "on_divergence": trainer.on_divergence,
            # Only when used, so checkpoints written before these options existed still resume.
            **({"frozen": qualname(trainer.frozen)} if trainer.frozen is not None else {}),
            **({"init": digest(eqx.filter(init, eqx.is_array))} if init is not None else {}),
        },
        "task": json.loads(to_json(trainer.task)),
        "model": json.loads(to_json(model_cfg)) if model_cfg is not None else None,
        "train": json.loads(to_json(trainer.cfg)),
        "members": [dataclasses.asdict(m) | {"task": dict(m.task)} for m in members],
    }


def save_run(path: Path, state: dict, step: int, records: list, header: dict, seconds: float = 0.0) -> None:
    """Write the state, the history (records (step, member, seed, metric, value)) and the header, atomically."""
    hist = np.asarray([(r[0], r[1], r[2], r[4]) for r in records], np.float64).reshape(-1, 4)
    metric_names = sorted({r[3] for r in records})
    metric_idx = np.asarray([metric_names.index(r[3]) for r in records], np.int32)
    tree = {"state": state, "history": hist, "history_metric": metric_idx}
    checkpoint.save(path, tree, {**header, "step": step, "metrics": metric_names, "format": FORMAT,
                                 "train_seconds": seconds})


def restore_run(path: Path, like: dict, header: dict, configs: dict[str, Any] | None = None
                ) -> tuple[dict, int, list, float]:
    """(state, step, records, seconds trained) from a checkpoint whose header matches `header` in every part.

    configs: the run's config objects by part ("task", "model", "train"). A field added to a config class since the
    checkpoint was written is then read as its default, so the checkpoint still resumes when the run leaves that
    field at its default (the numbers cannot have depended on a field that did not exist)."""
    configs = configs or {}
    stored = checkpoint.read_header(path)
    for part in ("task", "model", "train", "members", "fingerprint"):
        now = json.loads(json.dumps(header[part]))
        if stored.get(part) != now and part in configs:
            stored[part] = with_new_defaults(stored.get(part), configs[part])
        if stored.get(part) != now:
            raise checkpoint.CheckpointError(
                f"cannot resume from {path}: its {part} configuration differs from this run's "
                f"({differences(stored.get(part), now)})"
            )
    # The history's length is only known from the file, so its skeleton is taken from the stored arrays.
    arrays = checkpoint.load_arrays(path)
    hist, midx = arrays["['history']"], arrays["['history_metric']"]
    tree, _ = checkpoint.load(path, {"state": like, "history": hist, "history_metric": midx})
    records = [(int(h[0]), int(h[1]), int(h[2]), stored["metrics"][int(m)], float(h[3])) for h, m in zip(hist, midx)]
    return tree["state"], int(stored["step"]), records, float(stored.get("train_seconds", 0.0))


def warn_if_placement_differs(path: Path, header: dict) -> None:
    """Warn when a run resumes on another number of devices, or another split, than its checkpoint was trained
    with: it continues, but its numbers then differ from an uninterrupted run's at float round-off
    (train/placement.py). Checkpoints written before the placement was recorded are not checked."""
    stored = checkpoint.read_header(path)
    was = {k: stored[k] for k in ("devices", "split") if k in stored}
    now = {k: header[k] for k in was}
    if was != now:
        warnings.warn(f"resuming {path} with {now}; it was trained with {was}, so its numbers now differ from an "
                      f"uninterrupted run's at float round-off (MESALAB_HOST_DEVICES={was.get('devices', 1)} and the "
                      "same split continue it bit for bit)", stacklevel=3)


def with_new_defaults(stored: Any, like: Any) -> Any:
    """A stored config dict rebuilt as `like`'s class (fields it lacks take their defaults) and written back as the
    header writes it; unchanged when that fails (e.g. a field was removed)."""
    from mesalab.config import ConfigError, from_dict

    if not isinstance(stored, dict) or like is None or not dataclasses.is_dataclass(like):
        return stored
    try:
        return json.loads(to_json(from_dict(type(like), {k: v for k, v in stored.items() if k != "type"})))
    except (ConfigError, TypeError, ValueError):
        return stored


def differences(stored: Any, now: Any) -> str:
    """The keys whose values differ, 'key: stored → now', or the whole values when they are not both dicts."""
    if isinstance(stored, dict) and isinstance(now, dict):
        keys = sorted(set(stored) | set(now), key=str)
        return "; ".join(f"{k}: {stored.get(k, '(absent)')!r} → {now.get(k, '(absent)')!r}"
                         for k in keys if stored.get(k) != now.get(k))
    return f"stored {stored!r}, now {now!r}"


def qualname(fn: Any) -> str | None:
    if fn is None:
        return None
    fn = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def functions_of(module: Any) -> list[str]:
    """The functions a computed intervention holds (models/computed.py), by qualified name, so a resume with another
    clamp function of the same kind and values is refused; [] for the plain kinds (so older checkpoints resume)."""
    names = []
    for leaf in jax.tree_util.tree_leaves(module, is_leaf=lambda x: isinstance(x, eqx.Module) and x is not module):
        if isinstance(leaf, eqx.Module):
            names += functions_of(leaf)
    if dataclasses.is_dataclass(module):
        for field in dataclasses.fields(module):
            value = getattr(module, field.name, None)
            if callable(value) and not isinstance(value, (eqx.Module, type)):
                # A callable object's repr holds its settings (e.g. MatchRow(start=0, stop=4)) unless it is the
                # default one, which holds a memory address.
                text = repr(value) if not inspect.isroutine(value) and " at 0x" not in repr(value) else None
                names.append(f"{field.name}={text or qualname(value)}")
            elif isinstance(value, (list, tuple)):
                names += [n for v in value if isinstance(v, eqx.Module) for n in functions_of(v)]
    return names


def digest(tree: Any) -> str:
    h = hashlib.sha1()
    for leaf in jax.tree_util.tree_leaves(tree):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:16]
