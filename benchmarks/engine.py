"""Benchmark of the training engine (`mesalab.train.Trainer`) on two reference workloads.

    python benchmarks/engine.py [--quick]

Workloads
  (a) 1-layer linear self-attention on in-context regression, d = N = 10, batch 2048 (von Oswald et al. 2023).
  (b) 2-layer, 4-head causal linear attention on linear dynamics, T = 50, constructed tokens, batch 256.

Each workload is trained as an ensemble of E ∈ {1, 8, 64} members by one compiled chunk program
(`Trainer.chunk_program`: a jitted lax.scan over steps, vmapped over members). Columns:

  group           members vmapped together (TrainConfig.ensemble_group; groups run one after another).
  steps/chunk     optimizer steps in the timed chunk program (chosen so one call takes about --seconds).
  compile s       wall time of `lower(...).compile()` of the chunk program (persistent cache disabled).
  model-steps/s   E × steps / seconds per call (median of the timed calls, after one untimed warm-up call; the
                  first call of a large program is slower, its buffers are being paged in).
  vs E=1          model-steps/s relative to E = 1 of the same workload: the ensemble speed-up.
  sampling        time of a program that ONLY samples the same batches (same keys and shapes, a jitted lax.scan
                  vmapped over members) divided by the time of the full chunk: the share of step time spent on data.
  MFLOP/step      FLOPs of one optimizer step of one member, from XLA's cost analysis of the compiled chunk. XLA
                  counts a while-loop (scan) body once, not once per trip; this is detected by comparing with a
                  1-step program and the division by the number of steps is done only where needed.
  GFLOP/s, % peak achieved FLOP/s, and as a fraction of the fp32 matmul peak measured in the same run (best of
                  several 2048×2048 @ 2048×2048 products).
  × authors       E = 1 model-steps/s over the authors' code on a 2-core CPU (DESIGN: (a) ~52, (b) ~5.5 steps/s).
"""

from __future__ import annotations

import os

os.environ["MESALAB_COMPILATION_CACHE"] = "off"  # before mesalab is imported: compile times must be real

import argparse
import dataclasses
import functools
import statistics
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from rich.console import Console
from rich.table import Table

from mesalab.models import Transformer, TransformerConfig
from mesalab.studies.gd_equivalence import lsa_config
from mesalab.tasks import DynamicsConfig, RegressionConfig
from mesalab.train import Member, TrainConfig, Trainer
from mesalab.train.config import group_size

# (members E, ensemble_group G): groups of G members are vmapped and run one after another; G = E is all at once,
# G = 0 the engine's automatic choice (TrainConfig.ensemble_group).
ENSEMBLES = ((1, 1), (8, 8), (64, 64), (64, 8), (64, 1), (64, 0))


@dataclass
class Workload:
    name: str
    task: Any
    model: TransformerConfig
    train: TrainConfig
    authors_steps_per_s: float
    e1_steps: int  # steps per chunk at E = 1 (larger E are sized from the E = 1 rate)


def workloads(full: bool) -> list[Workload]:
    reg = RegressionConfig(d=10, n_context=10, x_half_width=0.5)
    dyn = DynamicsConfig(d=10, seq_len=50)
    dyn_model = TransformerConfig(d_model=40, n_layers=2, n_heads=4, d_head=20, attention="linear", causal=True,
                                  clip=1.5, init_scale=2e-4, readout_start=0, readout_size=10)
    return [
        Workload("(a) LSA regression", reg, lsa_config(reg),
                 TrainConfig(steps=1000, batch_size=2048, lr=1e-3, b2=0.98, chunk_steps=100, eval_batch_size=0),
                 52.0, 150 if full else 60),
        Workload("(b) 2L causal dynamics", dyn, dyn_model,
                 TrainConfig(steps=1000, batch_size=256, optimizer="adamw", lr=3e-4, weight_decay=0.05, clip_value=1.0,
                             schedule="warmup_cosine", warmup_steps=100, chunk_steps=100, eval_batch_size=0),
                 5.5, 30 if full else 12),
    ]


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def call_times(fn, args: tuple, reps: int) -> list[float]:
    """One untimed warm-up call, then `reps` timed calls."""
    block(fn(*args))
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        block(fn(*args))
        out.append(time.perf_counter() - t0)
    return out


def matmul_peak(n: int = 2048, reps: int = 6) -> float:
    """Best fp32 matmul FLOP/s of this machine."""
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a, b = jax.random.normal(ka, (n, n)), jax.random.normal(kb, (n, n))
    return 2 * n**3 / min(call_times(jax.jit(jnp.matmul), (a, b), reps))


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


def trainer_cfg(w: Workload, group: int) -> TrainConfig:
    return dataclasses.replace(w.train, ensemble_group=group)


def measure(w: Workload, e: int, group: int, n_steps: int, reps: int, loop_once: bool) -> dict[str, float]:
    trainer = Trainer(w.task, functools.partial(Transformer, w.model), trainer_cfg(w, group))
    members = [Member(seed) for seed in range(e)]
    state = trainer.init_state(members)
    lrs, tasks = trainer.member_arrays(members)
    args = (state["params"], state["opt"], state["key"], state["alive"], lrs, tasks)

    t0 = time.perf_counter()
    chunk = trainer.chunk_program(n_steps, e).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    step_s = statistics.median(call_times(chunk, args, reps)) / n_steps

    sampler = sampler_program(trainer, n_steps).lower(state["key"], tasks).compile()
    sample_s = statistics.median(call_times(sampler, (state["key"], tasks), reps)) / n_steps

    # With groups, the cost analysis counts the body of the loop over groups once: one group of members.
    g = group_size(trainer.cfg, trainer.member_activation_bytes(), e)
    flops_step = flops_of(chunk) / g / (1 if loop_once else n_steps)
    return {"n": n_steps, "group": g, "compile": compile_s, "rate": e / step_s, "sampling": sample_s / step_s,
            "flops": flops_step, "achieved": flops_step * e / step_s}


def scan_body_counted_once(w: Workload, n_steps: int) -> bool:
    """Whether XLA's cost analysis counts the scan body once (rather than n_steps times), from E = 1 programs."""
    trainer = Trainer(w.task, functools.partial(Transformer, w.model), w.train)
    members = [Member(0)]
    state = trainer.init_state(members)
    args = (state["params"], state["opt"], state["key"], state["alive"], *trainer.member_arrays(members))
    one, many = (flops_of(trainer.chunk_program(n, 1).lower(*args).compile()) for n in (1, n_steps))
    return many / one < 0.5 * (1 + n_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs (about 2 minutes in all)")
    parser.add_argument("--seconds", type=float, default=None, help="target seconds per timed call")
    opts = parser.parse_args()
    full = not opts.quick
    target_s = opts.seconds or (2.5 if full else 1.0)
    reps = 3 if full else 2
    console = Console(width=max(Console().width, 120))  # the table is ~110 columns wide

    peak = matmul_peak()
    console.print(f"JAX {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} cores); "
                  f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s; {'full' if full else 'quick'} run, "
                  f"{reps} timed calls of ~{target_s:g} s after one warm-up call")

    for w in workloads(full):
        loop_once = scan_body_counted_once(w, 4)
        table = Table(title=f"{w.name}  (batch {w.train.batch_size}, seq len {w.task.seq_len})")
        for col in ("E", "group", "steps/chunk", "compile s", "model-steps/s", "vs E=1", "sampling", "MFLOP/step",
                    "GFLOP/s", "% peak", "× authors"):
            table.add_column(col, justify="right")
        rows, rate1 = {}, None
        for e, group in ENSEMBLES:
            n = w.e1_steps if rate1 is None else max(1, round(target_s * rate1 / e))
            r = rows[(e, group)] = measure(w, e, group, n, reps, loop_once)
            rate1 = rate1 or r["rate"]
            table.add_row(
                str(e), str(group) if group else f"auto {r['group']}",
                str(r["n"]), f"{r['compile']:.1f}", f"{r['rate']:.1f}", f"{r['rate'] / rate1:.2f}×",
                f"{r['sampling']:.0%}", f"{r['flops'] / 1e6:.1f}", f"{r['achieved'] / 1e9:.2f}",
                f"{r['achieved'] / peak:.1%}", f"{r['rate'] / w.authors_steps_per_s:.2f}×" if e == 1 else "",
            )
        console.print(table)
        one = rows[(1, 1)]["rate"]
        console.print(f"  ensemble speed-up E=64 vs E=1: {rows[(64, 64)]['rate'] / one:.2f}× all at once, "
                      f"{rows[(64, 0)]['rate'] / one:.2f}× automatic groups; "
                      f"E=1 vs authors' {w.authors_steps_per_s:g} steps/s: {one / w.authors_steps_per_s:.2f}×"
                      + ("" if loop_once else "  (cost analysis counted every scan trip)"))


if __name__ == "__main__":
    main()
