"""Sampling cost under each random-number generator JAX provides (issue 15: "sampling off the critical path, by a
faster generator that JAX itself provides, e.g. the rbg / unsafe_rbg implementations").

    python benchmarks/prng.py [--rounds 30] [--calls 20]

For each implementation, one jitted `task.sample(key, batch)` per workload of benchmarks/engine.py: (a) in-context
linear regression at batch 2048 (d = 10, N = 10) and (c) the induction-circuits exemplar–label task at batch 32. The
implementations are timed interleaved, round after round, in one process, and each row keeps its fastest round
(the machine may be shared: the minimum is the least disturbed). Columns:

  ms/batch      the fastest round's mean time per sampled batch.
  vs threefry   that time over threefry2x32's (JAX's default) for the same workload, measured in this run.
  cores         CPU seconds over wall seconds of that implementation's rounds.

The data stream differs per implementation, so switching would move every study's numbers; mesalab keeps JAX's
default and records it in each run's environment.json.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
from rich.console import Console
from rich.table import Table

from mesalab.tasks import RegressionConfig
from mesalab.tasks.exemplar_label import ExemplarLabelConfig

IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
WORKLOADS = {
    "(a) regression, batch 2048": (RegressionConfig(d=10, n_context=10, x_half_width=0.5), 2048),
    "(c) exemplar-label, batch 32": (ExemplarLabelConfig(n_classes=5), 32),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    table = Table(title=f"Sampling per generator ({os.cpu_count()} cores visible, jax {jax.__version__})")
    for col in ("workload", "generator", "ms/batch", "vs threefry", "cores"):
        table.add_column(col)
    for name, (task, batch) in WORKLOADS.items():
        fns = {impl: jax.jit(lambda k, t=task, b=batch: t.sample(k, b).inputs) for impl in IMPLS}
        keys = {impl: jax.random.key(0, impl=impl) for impl in IMPLS}
        for impl in IMPLS:
            jax.block_until_ready(fns[impl](keys[impl]))
        best = dict.fromkeys(IMPLS, float("inf"))
        cpu = dict.fromkeys(IMPLS, 0.0)
        wall = dict.fromkeys(IMPLS, 0.0)
        for _ in range(args.rounds):
            for impl in IMPLS:
                t, c = time.perf_counter(), time.process_time()
                for i in range(args.calls):
                    out = fns[impl](jax.random.fold_in(keys[impl], i))
                jax.block_until_ready(out)
                dt = time.perf_counter() - t
                best[impl] = min(best[impl], dt / args.calls)
                cpu[impl] += time.process_time() - c
                wall[impl] += dt
        for impl in IMPLS:
            table.add_row(name, impl, f"{best[impl] * 1e3:.3f}", f"{best[impl] / best['threefry2x32']:.2f}×",
                          f"{cpu[impl] / wall[impl]:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
