"""The training engine: an ensemble of E models trained by one compiled program.

Each call of the compiled program runs `chunk_steps` optimizer steps inside a `lax.scan`, with data sampled inside
the scan, vmapped over a leading ensemble axis. Members differ in seed (initial weights and data stream), and may
differ in learning rate and in the task's dynamic fields (e.g. noise). Between chunks the host records metrics,
evaluates on a fixed batch, checks for divergence, updates the progress bar and writes an atomic checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import NamedSharding, PartitionSpec

from mesalab.config import ConfigError, override, stack_configs
from mesalab.models.hooks import Intervention
from mesalab.train import checkpoint
from mesalab.train.callbacks import notify
from mesalab.train.chunk import ensemble_program, evaluate_member, member_chunk
from mesalab.train.config import TrainConfig, group_size
from mesalab.train.loss import default_loss
from mesalab.train.optim import direction, optimizer_time
from mesalab.train.placement import (BATCH_AXIS, SPLITS, batch_mesh, devices_used, gather, place_members, replicate,
                                     safe_member_mesh)
from mesalab.train.progress import Progress
from mesalab.train.resume import restore_run, run_header, save_run, warn_if_placement_differs

CHECKPOINT_NAME = "checkpoint.safetensors"
LossFn = Callable[..., jax.Array]
MetricsFn = Callable[..., Mapping[str, jax.Array]]


def is_array_or_shape(x: Any) -> bool:
    """Array leaves, including the shape-only leaves that eqx.filter_eval_shape returns."""
    return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)


class TrainingDiverged(RuntimeError):
    """A loss or metric became NaN or infinite; the message names the member, step and metric."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One ensemble member: its seed, and optionally its own learning rate and task-field overrides."""

    seed: int
    lr: float | None = None
    task: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainResult:
    """models: the trained ensemble (array leaves have a leading member axis), on one device whatever the split;
    history: long-format metrics (step, member, seed, metric, value); step: optimizer steps done; train: the training
    config that produced it; devices: how many devices trained it."""

    models: Any
    history: pd.DataFrame
    step: int
    members: tuple[Member, ...]
    seconds: float
    train: TrainConfig | None = None
    devices: int = 1   # host devices the members (or each batch) were split over while training (placement.py)

    def curve(self, metric: str = "test_loss") -> dict[str, list]:
        """One metric's history: steps [S], values `[member][S]`, and time [S], the optimizer time Σ lr / peak lr at
        each step (train.optim.optimizer_time; the convergence rule measures the last quarter of training on it)."""
        rows = self.history[self.history.metric == metric]
        table = rows.pivot_table(index="member", columns="step", values="value", aggfunc="mean")
        steps = [int(s) for s in table.columns]
        clock = optimizer_time(self.train, steps) if self.train is not None else [float(s) for s in steps]
        return {"steps": steps, "values": table.to_numpy().tolist(), "time": clock}

    def member(self, i: int) -> Any:
        """The i-th trained model, without the ensemble axis."""
        return member_of(self.models, i)


def member_of(stacked: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[i] if eqx.is_array(a) else a, stacked)


def as_members(seeds: int | Sequence[int] | Sequence[Member]) -> tuple[Member, ...]:
    """An int E means seeds 0 … E−1; a sequence lists the seeds (or Members) themselves."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"seeds = {seeds} is not allowed; expected an integer >= 1 or a list of seeds")
        return tuple(Member(s) for s in range(seeds))
    return tuple(m if isinstance(m, Member) else Member(int(m)) for m in seeds)


def init_models(make_model: Callable[..., Any], members: Sequence[Member]) -> Any:
    """Stacked models: member i is make_model(key=fold_in(PRNGKey(seed_i), 0))."""
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(m.seed), 0) for m in members])
    return eqx.filter_vmap(lambda k: make_model(key=k))(keys)


class Trainer:
    """Compiles and runs the ensemble training program for one (task, model, training) configuration.

    make_model: called as make_model(key=...) to build one model (e.g. functools.partial(Transformer, cfg)).
    loss_fn:    loss_fn(model, batch, interventions) -> scalar; defaults to the read-out ½·MSE under the mask
                (computed for the query row alone when the task trains only the last position).
    metrics_fn: optional metrics_fn(model, batch, interventions) -> {name: scalar}, evaluated on the fixed
                evaluation batch at chunk boundaries (e.g. progress measures read from a cache).
    interventions: applied in every training step and in evaluation (e.g. an attention pattern clamped for the
                whole of training); shared by all members.
    on_divergence: "stop" raises TrainingDiverged naming the member, step and metric; "freeze" keeps a diverged
                member at its last finite weights for the rest of training (its `alive` metric drops to 0) while
                the others train on — what a sweep over learning rates needs.
    frozen:     optional `where` function in the style of eqx.tree_at, model -> the array leaves (or subtrees) that
                training must leave exactly as they are (e.g. frozen compressed heads mixed into a fresh model).
                Their updates are zeroed after the optimizer, so weight decay leaves them alone too.
    """

    def __init__(
        self, task: Any, make_model: Callable[..., Any], train: TrainConfig, *,
        loss_fn: LossFn | None = None, metrics_fn: MetricsFn | None = None,
        interventions: Mapping[str, Intervention] | None = None, on_divergence: str = "stop",
        frozen: Callable[[Any], Any] | None = None,
    ):
        if on_divergence not in ("stop", "freeze"):
            raise ConfigError(f"on_divergence = {on_divergence!r} is not allowed; expected 'stop' or 'freeze'")
        self.on_divergence = on_divergence
        self.task, self.make_model, self.cfg = task, make_model, train
        self.loss_fn, self.metrics_fn = loss_fn or default_loss(task), metrics_fn
        self.interventions = dict(interventions or {})
        self.tx = direction(train)
        shapes, self._static = eqx.partition(eqx.filter_eval_shape(make_model, key=jax.random.PRNGKey(0)),
                                             is_array_or_shape)
        self.frozen = frozen
        # 1.0 for trained leaves, 0.0 for frozen ones (None when nothing is frozen).
        self._train_mask = None if frozen is None else eqx.tree_at(
            frozen, jax.tree_util.tree_map(lambda _: 1.0, shapes),
            replace_fn=lambda sub: jax.tree_util.tree_map(lambda _: 0.0, sub))
        self._chunks: dict[tuple, Callable] = {}
        self._batch_sharding: Any = None   # set by fit(split="batch") while it runs (train/chunk.py reads it)
        # Evaluation alone, for the untrained models of a null run; trained chunks evaluate inside their program.
        self._eval = jax.jit(jax.vmap(self._evaluate_member, in_axes=(0, 0, None)))
        self._act_bytes: int | None = None
        self.check_shapes()

    def check_shapes(self) -> None:
        """Fail now, naming the field, if the model's inputs or read-out do not fit the task's tokens and targets."""
        model = eqx.filter_eval_shape(self.make_model, key=jax.random.PRNGKey(0))
        cfg = getattr(model, "cfg", None)
        if cfg is None or not hasattr(model, "predict"):
            return
        width, target = getattr(self.task, "token_width", None), getattr(self.task, "target_width", None)
        if width is not None and cfg.input_width != width:
            field = "d_in" if cfg.d_in is not None else "d_model"
            plus = f" + pos_dim = {cfg.pos_dim}" if field == "d_model" and cfg.pos_dim else ""
            raise ConfigError(f"TransformerConfig.{field} = {getattr(cfg, field)} does not fit the task's tokens; "
                              f"expected {width + (cfg.pos_dim if field == 'd_model' else 0)} "
                              f"({type(self.task).__name__}.token_width = {width}{plus})")
        size = cfg.prediction_slice.stop - cfg.prediction_slice.start
        if target is not None and size != target:
            raise ConfigError(f"TransformerConfig.readout_size = {cfg.readout_size} gives predictions of width {size}; "
                              f"expected {target} ({type(self.task).__name__}.target_width; set readout_start/"
                              "readout_size or d_out)")

    # ---- state -------------------------------------------------------------------------------------------------
    def init_state(self, members: Sequence[Member], init: Any = None) -> dict[str, Any]:
        models = init_models(self.make_model, members) if init is None else init
        params = eqx.filter(models, eqx.is_array)
        opt = jax.vmap(self.tx.init)(params)
        data_keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(m.seed), 1) for m in members])
        return {"params": params, "opt": opt, "key": data_keys, "alive": jnp.ones(len(members), bool)}

    def member_arrays(self, members: Sequence[Member]) -> tuple[jax.Array, Any]:
        """Per-member learning rates [E] and the task config with its dynamic fields stacked to [E]."""
        lrs = jnp.asarray([m.lr if m.lr is not None else self.cfg.lr for m in members], jnp.float32)
        tasks = [override(self.task, **dict(m.task)) for m in members]
        return lrs, stack_configs(tasks)

    # ---- compiled programs -------------------------------------------------------------------------------------
    def member_activation_bytes(self) -> int:
        """Bytes of every cached activation of one member's training batch (from shapes only, nothing runs);
        0 for models without `run_with_cache`."""
        if self._act_bytes is None:
            model = eqx.filter_eval_shape(self.make_model, key=jax.random.PRNGKey(0))
            if not hasattr(model, "run_with_cache"):
                self._act_bytes = 0
            else:
                batch = jax.eval_shape(lambda k: self.task.sample(k, self.cfg.batch_size), jax.random.PRNGKey(0))
                cache = eqx.filter_eval_shape(
                    lambda m, x: jax.vmap(lambda s: m.run_with_cache(s, "all"))(x), model, batch.inputs)
                self._act_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree_util.tree_leaves(cache))
        return self._act_bytes

    def chunk_program(self, n_steps: int, members: int) -> Callable:
        """The compiled program for `n_steps` steps of `members` members (vmapped in groups, see TrainConfig), with
        the evaluation of the final weights fused in (train/chunk.py):
        program(params, opt, key, alive, lrs, tasks, eval_key) -> (params, opt, key, alive, losses [E, n], metrics)."""
        group = group_size(self.cfg, self.member_activation_bytes(), members)
        key = (n_steps, group, self._batch_sharding)
        if key not in self._chunks:
            self._chunks[key] = ensemble_program(member_chunk(self, n_steps), group, members)
        return self._chunks[key]

    def _evaluate_member(self, params, task, key):
        return evaluate_member(self, params, task, key)

    # ---- the loop ----------------------------------------------------------------------------------------------
    def fit(
        self, seeds: int | Sequence[int] | Sequence[Member] = 1, *, checkpoint_dir: str | Path | None = None,
        resume: bool = False, progress: bool = True, eval_seed: int = 12345, stop_after: int | None = None,
        init: Any = None, devices: Sequence[Any] | None = None, callbacks: Sequence[Any] = (),
        split: str = "members",
    ) -> TrainResult:
        """Train the ensemble. With `checkpoint_dir`, a checkpoint is written at every chunk boundary; with
        `resume`, training continues from it and ends with the same numbers as an uninterrupted run.
        `stop_after` ends early after that many steps (a chunk boundary), as if the process had been killed;
        0 returns the untrained models with one evaluation recorded at step 0 (what a study's null run uses).
        `init`: stacked models (leading member axis, structured as make_model's) to start from instead of fresh
        ones — continued training, or fresh parts combined with per-member frozen ones. `devices`: where the
        members train (default: every local device; train/placement.py): `split="members"` puts a share of the
        members on each, `split="batch"` gives every device a share of each member's batch (the gradient summed
        across devices; the same data, numbers equal to round-off), which helps a few members with large steps.
        `callbacks`: objects called at the start, after every chunk and at the end (train/callbacks.py)."""
        if split not in SPLITS:
            raise ConfigError(f"fit(split={split!r}) is not allowed; expected one of {', '.join(map(repr, SPLITS))}")
        members = as_members(seeds)
        lrs, tasks = self.member_arrays(members)
        if init is not None:
            self._check_init(init, len(members))
        state, step, records, seconds_before = self.init_state(members, init), 0, [], 0.0
        ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        header = run_header(self, members, eval_seed, init)
        if resume and ckpt is not None and ckpt.exists():
            configs = {"task": self.task, "model": getattr(self._static, "cfg", None), "train": self.cfg}
            state, step, records, seconds_before = restore_run(ckpt, state, header, configs)
        eval_key = jax.random.PRNGKey(eval_seed)
        if step < self.cfg.steps:
            state, lrs, tasks = self.place(split, devices, len(members), step, (state, lrs, tasks), eval_key)
            # Recorded, not compared: a resume on other devices continues, with a warning.
            header = {**header, "devices": devices_used(state["params"]), "split": split}
            if seconds_before or step:
                warn_if_placement_differs(ckpt, header)
        try:
            return self._loop(members, state, lrs, tasks, step, records, seconds_before, ckpt, header, eval_key,
                              progress, stop_after, callbacks)
        finally:
            self._batch_sharding = None

    def place(self, split: str, devices: Sequence[Any] | None, n_members: int, step: int, arrays: tuple,
              eval_key: jax.Array) -> tuple:
        """(state, lrs, tasks) placed on the host devices for fit's `split` (train/placement.py); with "batch" the
        trainer's programs split every batch until fit ends (benchmarks/engine.py calls this directly)."""
        state, lrs, tasks = arrays
        n = min(self.cfg.chunk_steps, self.cfg.steps - step)
        args = (state["params"], state["opt"], state["key"], state["alive"], lrs, tasks, eval_key)
        if split == "batch":
            mesh = safe_member_mesh(self.cfg.batch_size, devices, self.chunk_program(n, n_members), args, batch_mesh)
            if mesh is not None:
                self._batch_sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
            return replicate(arrays, mesh)
        if group_size(self.cfg, self.member_activation_bytes(), n_members) < n_members:
            return arrays   # members grouped into sequential batches stay on one device
        return place_members(arrays, safe_member_mesh(n_members, devices, self.chunk_program(n, n_members), args))

    def _loop(self, members, state, lrs, tasks, step, records, seconds_before, ckpt, header, eval_key, progress,
              stop_after, callbacks) -> TrainResult:
        notify(callbacks, "on_train_start", members, step, list(records))
        bar = Progress(self.cfg.steps, len(members), enabled=progress, start=step)
        t0, total = time.perf_counter(), self.cfg.steps if stop_after is None else min(stop_after, self.cfg.steps)
        if total == 0 and step == 0 and self.cfg.eval_batch_size:
            # Untrained models (a study's null): one evaluation at step 0, so the history has their metrics.
            ev = {k: np.asarray(v) for k, v in self._eval(state["params"], tasks, eval_key).items()}
            records += member_records(0, members, ev)
        try:
            while step < total:
                n = min(self.cfg.chunk_steps, self.cfg.steps - step)
                program = self.chunk_program(n, len(members))
                params, opt, key, alive, losses, ev = program(state["params"], state["opt"], state["key"],
                                                              state["alive"], lrs, tasks, eval_key)
                losses, ev = np.asarray(losses), {k: np.asarray(v) for k, v in ev.items()}
                new_records = member_records(step + n, members, {"train_loss": losses[:, -1]})
                if self.on_divergence == "stop":
                    check_finite({"train_loss": losses}, members, first_step=step + 1)
                    check_finite({k: v[:, None] for k, v in ev.items()}, members, first_step=step + n)
                else:
                    new_records += member_records(step + n, members, {"alive": np.asarray(alive)})
                new_records += member_records(step + n, members, ev)
                state, step = {"params": params, "opt": opt, "key": key, "alive": alive}, step + n
                records += new_records
                if ckpt is not None:
                    save_run(ckpt, state, step, records, header, seconds_before + time.perf_counter() - t0)
                notify(callbacks, "on_chunk_end", step, new_records)
                finite = losses[:, -1][np.isfinite(losses[:, -1])]
                bar.update(step, float(np.mean(finite)) if finite.size else float("nan"))
        finally:
            bar.close()
        # Gathered onto one device: analyses of the trained models then run as unsplit programs, as on one device
        # (a split one could call jaxlib's LAPACK kernels on both devices at once and deadlock; placement.py).
        devices = devices_used(state["params"])
        models = eqx.combine(gather(state["params"]), self._static)
        history = pd.DataFrame(records, columns=["step", "member", "seed", "metric", "value"])
        # Seconds spent training, summed over the interrupted sessions of a resumed run.
        result = TrainResult(models, history, step, members, seconds_before + time.perf_counter() - t0, self.cfg,
                             devices)
        notify(callbacks, "on_train_end", result)
        return result

    def _check_init(self, init: Any, n_members: int) -> None:
        want = jax.tree_util.tree_structure(eqx.filter(eqx.filter_eval_shape(self.make_model, key=jax.random.PRNGKey(0)),
                                                       is_array_or_shape))
        got = jax.tree_util.tree_structure(eqx.filter(init, eqx.is_array))
        if want != got:
            raise ConfigError("fit(init=...) must be stacked models built like make_model's; the structures differ")
        sizes = {a.shape[0] for a in jax.tree_util.tree_leaves(eqx.filter(init, eqx.is_array))}
        if sizes != {n_members}:
            raise ConfigError(f"fit(init=...) has leading axes {sorted(sizes)}; expected {n_members} (one per member)")

def member_records(step: int, members: Sequence[Member], values: Mapping[str, np.ndarray]) -> list[tuple]:
    """History rows (step, member, seed, metric, value) of per-member values {metric: [E]}."""
    return [(step, i, m.seed, k, float(v[i])) for k, v in values.items() for i, m in enumerate(members)]


def check_finite(metrics: Mapping[str, np.ndarray], members: Sequence[Member], first_step: int) -> None:
    """Raise TrainingDiverged naming the first member, step and metric that is NaN or infinite.
    metrics: name -> [E, steps] values for steps first_step, first_step + 1, …"""
    for name, values in metrics.items():
        bad = ~np.isfinite(values)
        if bad.any():
            member, offset = np.argwhere(bad)[np.argmin(np.argwhere(bad)[:, 1])]
            raise TrainingDiverged(
                f"training diverged: member {member} (seed {members[member].seed}) has {name} = "
                f"{values[member, offset]} at step {first_step + offset}; the last checkpoint (if any) holds the "
                "last finite state. Try a lower learning rate, gradient clipping, or a smaller init scale."
            )


def load_models(checkpoint_dir: str | Path) -> Any:
    """The trained ensemble stored in a training checkpoint (leading member axis), rebuilt from its JSON header.

    Only Transformer models built from a TransformerConfig can be rebuilt this way; nothing in the file runs.
    """
    from mesalab.config import from_dict
    from mesalab.models.config import TransformerConfig
    from mesalab.models.transformer import Transformer

    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    header = checkpoint.read_header(path)
    model_cfg = {k: v for k, v in header["model"].items() if k != "type"}
    make = functools.partial(Transformer, from_dict(TransformerConfig, model_cfg))
    members = [Member(int(m["seed"])) for m in header["members"]]
    skeleton = eqx.filter(eqx.filter_eval_shape(init_models, make, members), is_array_or_shape)
    arrays = checkpoint.load_arrays(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(skeleton)
    leaves = []
    for p, ref in flat:
        name = "['state']['params']" + jax.tree_util.keystr(p)
        if name not in arrays:
            raise checkpoint.CheckpointError(f"checkpoint {path} has no array {name}")
        leaves.append(jnp.asarray(arrays[name], dtype=ref.dtype))
    static = eqx.partition(eqx.filter_eval_shape(make, key=jax.random.PRNGKey(0)), is_array_or_shape)[1]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
