"""Training throughput of each sequence mixer at the shapes of study S8 (in-context language learning, Akyürek et al.
2024; reference/icll.md §1.2: REGBENCH prompts average ≈ 375 tokens, vocabulary 20).

    python benchmarks/mixers.py [--seq-lens 256 512] [--batch 32] [--d-model 64] [--reps 3]

Each row is a 2-layer model of one mixer kind (TransformerConfig.attention), d_model 64, pre-LayerNorm, no MLPs (so
the mixers' costs are what differ), one-hot inputs over 20 tokens, next-token cross-entropy at every position. The
timed program is one jitted forward + backward (`jax.value_and_grad`) of the whole batch; the optimizer is not
included. Columns:

  params       the model's parameters (embedding and unembedding included).
  compile s    the first call (tracing, compiling, running once); the persistent compilation cache is off.
  ms/step      median wall time of --reps timed calls after one untimed warm-up call.
  tokens/s     batch × seq len / (ms/step).
  vs softmax   tokens/s over the softmax transformer's at the same seq len, measured in this run.
  cores        CPU seconds of this process over wall seconds during the timed calls (2 = both cores busy).

Nothing is compared with a typed-in constant; the machine may be shared, so read the ratios, not the absolute rates.
"""

from __future__ import annotations

import os

os.environ["MESALAB_COMPILATION_CACHE"] = "off"  # before mesalab is imported: compile times must be real

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
from rich.console import Console
from rich.table import Table

from mesalab.models import Transformer, TransformerConfig, run
from mesalab.train.loss import masked_cross_entropy

VOCAB = 20  # REGBENCH: 18 letters, separator, padding
# (row name, per-layer kinds, extra TransformerConfig fields)
MIXERS = (
    ("softmax", ("softmax", "softmax"), {"pos_embedding": "learned"}),
    ("linear", ("linear", "linear"), {"pos_embedding": "learned"}),
    ("mesa", ("mesa", "mesa"), {"pos_embedding": "learned"}),
    ("lstm", ("lstm", "lstm"), {}),
    ("ssm (fused scan)", ("ssm", "ssm"), {"ssm_scan": "fused"}),
    ("ssm (sequential scan)", ("ssm", "ssm"), {"ssm_scan": "sequential"}),
    ("ssm (parallel scan)", ("ssm", "ssm"), {"ssm_scan": "parallel"}),
    ("ngram (k = 1, 2)", ("ngram1", "ngram2"), {}),
    ("ngram2 + linear", ("ngram2", "linear"), {"pos_embedding": "learned"}),
    ("ngram2 + lstm", ("ngram2", "lstm"), {}),
)


def model_config(kinds: tuple[str, ...], d_model: int, seq_len: int, extra: dict) -> TransformerConfig:
    extra = dict(extra)
    if extra.get("pos_embedding") == "learned":
        extra["max_len"] = seq_len
    return TransformerConfig(d_model=d_model, n_layers=len(kinds), n_heads=4, d_head=d_model // 4, attention=kinds,
                             layer_norm=True, d_in=VOCAB, d_out=VOCAB, **extra)


def step_fn():
    """jitted (model, inputs, targets) -> (loss, grads): next-token cross-entropy at every position."""
    def loss(model, inputs, targets):
        return masked_cross_entropy(run(model, inputs), targets, jnp.ones(inputs.shape[:2], inputs.dtype))
    return eqx.filter_jit(eqx.filter_value_and_grad(loss))


def measure(kinds, extra, batch: int, seq_len: int, d_model: int, reps: int) -> dict:
    cfg = model_config(kinds, d_model, seq_len, extra)
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    ids = jax.random.randint(jax.random.PRNGKey(1), (batch, seq_len + 1), 0, VOCAB)
    onehot = jax.nn.one_hot(ids, VOCAB, dtype=jnp.float32)
    inputs, targets = onehot[:, :-1], onehot[:, 1:]
    fn = step_fn()
    t0 = time.perf_counter()
    jax.block_until_ready(fn(model, inputs, targets))
    compile_s = time.perf_counter() - t0
    walls, cpu = [], 0.0
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(model, inputs, targets))
        walls.append(time.perf_counter() - w0)
        cpu += time.process_time() - c0
    wall = statistics.median(walls)
    params = sum(a.size for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)))
    return {"params": params, "compile": compile_s, "wall": wall, "rate": batch * seq_len / wall,
            "cores": cpu / sum(walls)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="row names to run (default: all)")
    args = ap.parse_args()
    console = Console(width=max(Console().width, 110))
    console.print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s), "
                  f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")
    for seq_len in args.seq_lens:
        table = Table(title=f"2 layers, d_model {args.d_model}, batch {args.batch}, seq len {seq_len}: "
                            "forward + backward, next-token cross-entropy")
        for col in ("mixer", "params", "compile s", "ms/step", "tokens/s", "vs softmax", "cores"):
            table.add_column(col, justify="left" if col == "mixer" else "right")
        base = None
        for name, kinds, extra in MIXERS:
            if args.only and name not in args.only:
                continue
            r = measure(kinds, extra, args.batch, seq_len, args.d_model, args.reps)
            base = r["rate"] if name == "softmax" else base
            table.add_row(name, f"{r['params']:,}", f"{r['compile']:.1f}", f"{1e3 * r['wall']:.1f}",
                          f"{r['rate']:,.0f}", f"{r['rate'] / base:.2f}" if base else "–", f"{r['cores']:.2f}")
        console.print(table)
    console.print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
