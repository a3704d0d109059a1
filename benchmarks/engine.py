"""Benchmark of the training engine (`mesalab.train.Trainer`) against a plain training loop, in the same run.

    python benchmarks/engine.py [--quick]

Workloads
  (a) 1-layer linear self-attention on in-context regression, d = N = 10, batch 2048 (von Oswald et al. 2023).
  (b) 2-layer, 4-head causal linear attention on linear dynamics, T = 50, constructed tokens, batch 256.
  (c) small-batch ensembles: the S6 model (2 layers, 8 softmax heads, d_model 64, rotary positions, attention
      only) on its exemplar–label task (tasks/exemplar_label.py: exemplar, label, exemplar, label, query), batch 32.

The reference (benchmarks/reference.py) is timed in the same process: a jitted train step of one model called from
a Python loop, with optax's optimizer, on the same model, sampler and batch size. Every ratio below is to numbers
measured in this run; nothing is compared with a constant.

Table 1, steady training (compile excluded). Each workload is trained as an ensemble of E members by one compiled
chunk program (`Trainer.chunk_program`: a jitted lax.scan over steps, vmapped over members). Columns:

  group           members vmapped together (TrainConfig.ensemble_group; groups run one after another).
  devices         host devices holding the members. With several (mesalab's default: one per core;
                  MESALAB_HOST_DEVICES=1 for one) the table adds rows with the members split over the devices, and E = 1 with each batch split over them
                  ("(batch)"), as Trainer.fit(split=...) does; a program that calls jaxlib's LAPACK kernels stays
                  on one device there (train/placement.py says why).
  steps/chunk     optimizer steps in the timed chunk program (chosen so one call takes about --seconds).
  model-steps/s   E × steps / seconds per call (median of the timed calls, after one untimed warm-up call).
  vs E=1          model-steps/s relative to E = 1 of the same workload: the ensemble speed-up.
  vs reference    model-steps/s over the reference loop's steps/s (one model).
  cores           CPU seconds of this process over wall seconds during the timed calls (2 = both cores busy).
  sampling alone  time of a program that ONLY samples the same batches (same keys and shapes, a jitted lax.scan
                  vmapped over members) divided by the time of the full chunk: the share of step time spent on data
                  if nothing overlapped it.
  sampling added  1 − (the same chunk program trained on one fixed batch per member, no sampling) / (the chunk):
                  what sampling adds to a step's wall time, i.e. its share of the critical path.
  GFLOP/s, % peak achieved FLOP/s (XLA's cost analysis of the compiled chunk; a scan body counted once is detected
                  and scaled), and as a fraction of the fp32 matmul peak measured in the same run.

Table 2, end to end: a 500-step run from nothing (model built, programs compiled, trained), the reference loop
against `mesalab.train.train` with the workload's chunking and no evaluation. Compilation is included; the
persistent compilation cache is off for the whole benchmark.
"""

from __future__ import annotations

import os

os.environ["MESALAB_COMPILATION_CACHE"] = "off"  # before mesalab is imported: compile times must be real

import argparse
import dataclasses
import functools
import statistics
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from reference import ReferenceLoop, timed
from rich.console import Console
from rich.table import Table

from mesalab.models import Transformer, TransformerConfig
from mesalab.studies.gd_equivalence import lsa_config
from mesalab.tasks import DynamicsConfig, RegressionConfig
from mesalab.tasks.exemplar_label import ExemplarLabelConfig
from mesalab.train import Member, TrainConfig, Trainer, train
from mesalab.train.chunk import ensemble_program, member_chunk
from mesalab.train.config import group_size
from mesalab.train.placement import devices_used

# (members E, ensemble_group G): groups of G members are vmapped and run one after another; G = E is all at once,
# G = 0 the engine's automatic choice (TrainConfig.ensemble_group).
ENSEMBLES = ((1, 1), (8, 8), (64, 64), (64, 8), (64, 0))


def ensembles(n_devices: int) -> list[tuple[int, int, int, str]]:
    """(E, G, devices, split) rows: every ENSEMBLES entry on one device, and with several host devices
    (MESALAB_HOST_DEVICES) E = 1 with its batch split over all of them and the all-at-once ensembles with their
    members split over them."""
    one = [(e, g, 1, "members") for e, g in ENSEMBLES]
    if n_devices == 1:
        return one
    return one + [(1, 1, n_devices, "batch")] + [(e, g, n_devices, "members") for e, g in ENSEMBLES if g == e > 1]
END_TO_END_STEPS = 500


@dataclass
class Workload:
    name: str
    task: Any
    model: TransformerConfig
    train: TrainConfig
    e1_steps: int  # steps per chunk at E = 1 (larger E are sized from the E = 1 rate)


def workloads(full: bool) -> list[Workload]:
    reg = RegressionConfig(d=10, n_context=10, x_half_width=0.5)
    dyn = DynamicsConfig(d=10, seq_len=50)
    dyn_model = TransformerConfig(d_model=40, n_layers=2, n_heads=4, d_head=20, attention="linear", causal=True,
                                  clip=1.5, init_scale=2e-4, readout_start=0, readout_size=10)
    # The S6 model (induction-circuits; Singh et al. 2024) on its own task: exemplar, label, exemplar, label, query.
    cls = ExemplarLabelConfig()
    cls_model = TransformerConfig(d_in=cls.token_width, d_model=64, n_layers=2, n_heads=8, d_head=8,
                                  attention="softmax", causal=True, layer_norm=True, d_out=cls.n_labels,
                                  pos_embedding="rope")
    return [
        Workload("(a) LSA regression", reg, lsa_config(reg),
                 TrainConfig(steps=1000, batch_size=2048, lr=1e-3, b2=0.98, chunk_steps=100, eval_batch_size=0),
                 300 if full else 100),
        Workload("(b) 2L causal dynamics", dyn, dyn_model,
                 TrainConfig(steps=1000, batch_size=256, optimizer="adamw", lr=3e-4, weight_decay=0.05, clip_value=1.0,
                             schedule="warmup_cosine", warmup_steps=100, chunk_steps=100, eval_batch_size=0),
                 30 if full else 12),
        Workload("(c) 2L×8 heads, 5 tokens", cls, cls_model,
                 TrainConfig(steps=1000, batch_size=32, lr=1e-3, chunk_steps=100, eval_batch_size=0),
                 1000 if full else 300),
    ]


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def call_times(fn, args: tuple, reps: int) -> tuple[list[float], float]:
    """One untimed warm-up call, then `reps` timed calls: (wall seconds of each, cores used over all of them)."""
    block(fn(*args))
    out, cpu = [], 0.0
    for _ in range(reps):
        wall, cores = timed(lambda: block(fn(*args)))
        out.append(wall)
        cpu += wall * cores
    return out, cpu / sum(out)


def matmul_peak(n: int = 2048, reps: int = 6) -> float:
    """Best fp32 matmul FLOP/s of this machine."""
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a, b = jax.random.normal(ka, (n, n)), jax.random.normal(kb, (n, n))
    return 2 * n**3 / min(call_times(jax.jit(jnp.matmul), (a, b), reps)[0])


def flops_of(compiled) -> float:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca  # a dict in JAX 0.10; a list of dicts in older versions
    return float(ca["flops"])


def sampler_program(trainer: Trainer, n_steps: int):
    """The data part of the chunk alone: the same key splits and task.sample calls, vmapped over members. The last
    batch is carried through the scan so that every step's batch must be materialised."""
    batch_size = trainer.cfg.batch_size

    def run(key, task):
        def step(carry, _):
            key, _ = carry
            key, sub = jax.random.split(key)
            b = task.sample(sub, batch_size)
            return (key, (b.inputs, b.targets, b.loss_mask)), None

        like = jax.eval_shape(lambda k: task.sample(k, batch_size), key)
        zeros = tuple(jnp.zeros(x.shape, x.dtype) for x in (like.inputs, like.targets, like.loss_mask))
        (key, last), _ = jax.lax.scan(step, (key, zeros), None, length=n_steps)
        return key, last

    return jax.jit(jax.vmap(run))


class FixedBatch(eqx.Module):
    """A stand-in task whose every sample is the same batch: the chunk program without sampling."""

    batch: Any

    def sample(self, key: jax.Array, batch_size: int) -> Any:
        return self.batch


def make_trainer(w: Workload, group: int = 1) -> Trainer:
    return Trainer(w.task, functools.partial(Transformer, w.model), dataclasses.replace(w.train, ensemble_group=group))


def measure(w: Workload, e: int, group: int, n_steps: int, reps: int, loop_once: bool,
            devices: int = 1, split: str = "members") -> dict[str, float]:
    """One row of table 1; with devices > 1 the members (split="members") or every batch (split="batch") are split
    over that many host devices as Trainer.fit does (train/placement.py), or stay on one where the program calls
    kernels that can deadlock there."""
    trainer = make_trainer(w, group)
    members = [Member(seed) for seed in range(e)]
    state = trainer.init_state(members)
    lrs, tasks = trainer.member_arrays(members)
    eval_key = jax.random.PRNGKey(0)
    if devices > 1:
        state, lrs, tasks = trainer.place(split, jax.devices()[:devices], e, 0, (state, lrs, tasks), eval_key)
    args = (state["params"], state["opt"], state["key"], state["alive"], lrs, tasks, eval_key)
    chunk = trainer.chunk_program(n_steps, e).lower(*args).compile()
    walls, cores = call_times(chunk, args, reps)
    step_s = statistics.median(walls) / n_steps
    fixed = FixedBatch(jax.vmap(lambda k, t: t.sample(k, trainer.cfg.batch_size))(args[2], args[5]))
    fixed_args = args[:5] + (fixed, args[6])
    no_data = ensemble_program(member_chunk(trainer, n_steps), g := group_size(
        trainer.cfg, trainer.member_activation_bytes(), e), e).lower(*fixed_args).compile()
    no_data_s = statistics.median(call_times(no_data, fixed_args, reps)[0]) / n_steps
    sampler = sampler_program(trainer, n_steps).lower(args[2], args[5]).compile()
    sample_s = statistics.median(call_times(sampler, (args[2], args[5]), reps)[0]) / n_steps
    # With groups, the cost analysis counts the body of the loop over groups once: one group of members.
    flops_step = flops_of(chunk) / g / (1 if loop_once else n_steps)
    return {"n": n_steps, "group": g, "devices": f"{devices_used(args)}{' (batch)' if split == 'batch' else ''}",
            "rate": e / step_s, "cores": cores,
            "sampling": sample_s / step_s,
            "added": 1 - no_data_s / step_s,
            "achieved": flops_step * e / step_s}


def measure_reference(w: Workload, n_steps: int, reps: int) -> dict[str, float]:
    """The reference loop's steady steps/s (median of `reps` timed runs after a warm-up) and cores used."""
    loop = ReferenceLoop(w.task, functools.partial(Transformer, w.model), w.train)
    loop.run(2)  # compile
    walls, cpu = [], 0.0
    for _ in range(reps):
        wall, cores = timed(lambda: loop.run(n_steps))
        walls.append(wall)
        cpu += wall * cores
    return {"rate": n_steps / statistics.median(walls), "cores": cpu / sum(walls)}


def end_to_end(w: Workload, reps: int) -> dict[str, float]:
    """Seconds for END_TO_END_STEPS steps from nothing, compile included: the reference loop (a fresh jitted step
    each time) and mesalab.train (a fresh Trainer each time); medians of `reps` alternating runs."""
    cfg = dataclasses.replace(w.train, steps=END_TO_END_STEPS)
    ref, ours = [], []
    for _ in range(reps):
        ref.append(timed(lambda: ReferenceLoop(w.task, functools.partial(Transformer, w.model), cfg).run(
            END_TO_END_STEPS))[0])
        ours.append(timed(lambda: block(train(w.task, w.model, cfg, 1, progress=False).models))[0])
    return {"reference": statistics.median(ref), "mesalab": statistics.median(ours)}


def scan_body_counted_once(w: Workload, n_steps: int) -> bool:
    """Whether XLA's cost analysis counts the scan body once (rather than n_steps times), from E = 1 programs."""
    trainer = make_trainer(w)
    members = [Member(0)]
    state = trainer.init_state(members)
    args = (state["params"], state["opt"], state["key"], state["alive"], *trainer.member_arrays(members),
            jax.random.PRNGKey(0))
    one, many = (flops_of(trainer.chunk_program(n, 1).lower(*args).compile()) for n in (1, n_steps))
    return many / one < 0.5 * (1 + n_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs (a few minutes in all)")
    parser.add_argument("--seconds", type=float, default=None, help="target seconds per timed call")
    parser.add_argument("--only", default="", help="workload letters to run, e.g. 'ac' (default: all)")
    opts = parser.parse_args()
    full = not opts.quick
    target_s = opts.seconds or (2.5 if full else 1.0)
    reps = 3
    console = Console(width=max(Console().width, 130))  # the table is ~125 columns wide

    peak = matmul_peak()
    console.print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s), "
                  f"{os.cpu_count()} cores; PRNG {jax.config.jax_default_prng_impl}; fp32 matmul peak "
                  f"{peak / 1e9:.1f} GFLOP/s; {'full' if full else 'quick'} run, {reps} timed calls of ~{target_s:g} s "
                  "after one warm-up call")
    e2e = Table(title=f"End to end: {END_TO_END_STEPS} steps of one model from nothing, compile included (seconds)")
    for col in ("workload", "reference loop", "mesalab train()", "speed-up"):
        e2e.add_column(col, justify="right")
    for w in workloads(full):
        if opts.only and w.name[1] not in opts.only:
            continue
        loop_once = scan_body_counted_once(w, 4)
        ref = measure_reference(w, w.e1_steps, reps)
        table = Table(title=f"{w.name}  (batch {w.train.batch_size}, seq len {w.task.seq_len}); reference loop "
                            f"{ref['rate']:.1f} steps/s on {ref['cores']:.2f} cores")
        for col in ("E", "group", "devices", "steps/chunk", "model-steps/s", "vs E=1", "vs reference", "cores", "sampling alone",
                    "sampling added", "GFLOP/s", "% peak"):
            table.add_column(col, justify="right")
        rows, rate1 = {}, None
        for e, group, devices, split in ensembles(jax.device_count()):
            n = w.e1_steps if rate1 is None else max(1, round(target_s * rate1 / e))
            r = rows[(e, group, devices, split)] = measure(w, e, group, n, reps, loop_once, devices, split)
            rate1 = rate1 or r["rate"]
            table.add_row(str(e), str(group) if group else f"auto {r['group']}", str(r["devices"]), str(r["n"]),
                          f"{r['rate']:.1f}", f"{r['rate'] / rate1:.2f}×", f"{r['rate'] / ref['rate']:.2f}×",
                          f"{r['cores']:.2f}", f"{r['sampling']:.0%}", f"{r['added']:.0%}",
                          f"{r['achieved'] / 1e9:.2f}", f"{r['achieved'] / peak:.1%}")
        console.print(table)
        console.print(f"  E=1 vs the reference loop: {rows[(1, 1, 1, 'members')]['rate'] / ref['rate']:.2f}×; "
                      f"ensemble speed-up E=64 vs E=1: {rows[(64, 64, 1, 'members')]['rate'] / rate1:.2f}× all at "
                      f"once, {rows[(64, 0, 1, 'members')]['rate'] / rate1:.2f}× automatic groups"
                      + "".join(f"; E={e} on {d} devices ({s}) vs 1: "
                                f"{rows[(e, g, d, s)]['rate'] / rows[(e, g, 1, 'members')]['rate']:.2f}×"
                                for e, g, d, s in rows if d > 1)
                      + ("" if loop_once else "  (cost analysis counted every scan trip)"))
        t = end_to_end(w, reps)
        e2e.add_row(w.name, f"{t['reference']:.2f}", f"{t['mesalab']:.2f}", f"{t['reference'] / t['mesalab']:.2f}×")
    console.print(e2e)


if __name__ == "__main__":
    main()
