"""Config and presets of the mesa-reverse-engineering study, and the training recipe its parts share."""

from __future__ import annotations

from mesalab.config import (
    NONNEGATIVE, NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, config, inner_keys, integer, require, same_keys, tuple_of,
)
from mesalab.studies.mesa_dynamics.models import model_setup
from mesalab.train import TrainConfig

# Fixed data seeds: the test set, the probes' fit and score sets, the few-shot test set and the Neumann systems.
TEST_SEED, PROBE_FIT_SEED, PROBE_TEST_SEED = 2024, 31, 32
RETRAIN_SEED_OFFSET = 100  # the retrained interpolated models start from weights no trained member had


@config
class Config:
    """d, seq_len, noise: the task; seeds: members per model. depths, deep_*: the linear-attention stacks
    (4 heads, key deep_key) for probes, compression and few-shot; raw_*: the raw-token softmax model for the mesa
    dataset; lr, weight_decay, grad_clip, warmup_steps, init_std, act_clip: AdamW as in mesa-dynamics, on a
    schedule that ends with training. n_probe: sequences to fit probes on (as many again score them), probe_lambda:
    their ridge. neumann_depths, neumann_lambda, neumann_positions: the constructions' depths, λ and the prefix
    lengths whose Gram matrices they invert. fewshot_*: the regression tasks and the tuning of E and the prompt
    (Adam at fewshot_lr; the authors use 1e-3, see repurpose.py)."""

    d: int = 10
    seq_len: int = 50
    noise: float = 0.01
    seeds: int = 3
    depths: tuple[int, ...] = (2, 4)
    deep_key: int = 40
    deep_steps: int = 1000
    deep_batch_size: int = 64
    raw_layers: int = 2
    raw_steps: int = 3000
    raw_batch_size: int = 64
    raw_lr: float = 3e-3
    lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    init_std: float = 2e-4
    act_clip: float = 1.5
    chunk_steps: int = 250
    eval_batch_size: int = 256
    n_test: int = 1024
    n_probe: int = 1024
    probe_lambda: float = 1e-3
    interpolation_points: int = 5
    neumann_depths: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 24, 32, 48)
    neumann_lambda: float = 1e-3
    neumann_positions: tuple[int, ...] = (11, 15, 25, 50)
    neumann_systems: int = 16
    fewshot_examples: int = 15
    fewshot_prefix: int = 4
    fewshot_steps: int = 1000
    fewshot_batch_size: int = 64
    fewshot_lr: float = 3e-2
    fewshot_test: int = 512

    RULES = {
        **dict.fromkeys(("d", "seq_len", "seeds", "deep_key", "deep_steps", "deep_batch_size", "raw_layers",
                         "raw_steps", "raw_batch_size", "chunk_steps", "eval_batch_size", "n_test", "n_probe",
                         "interpolation_points", "neumann_systems", "fewshot_examples", "fewshot_steps",
                         "fewshot_batch_size", "fewshot_test"), POSITIVE_INT),
        **dict.fromkeys(("raw_lr", "lr", "init_std", "probe_lambda", "neumann_lambda", "fewshot_lr"), POSITIVE),
        **dict.fromkeys(("noise", "weight_decay"), NONNEGATIVE),
        "warmup_steps": NONNEGATIVE_INT,
        "grad_clip": NONNEGATIVE.note("0: no clipping"),
        "act_clip": NONNEGATIVE.note("0: no clipping"),
        "depths": tuple_of(POSITIVE_INT, "layer counts >= 1", nonempty=True),
        "neumann_depths": tuple_of(POSITIVE_INT, "depths >= 1", nonempty=True),
        "neumann_positions": tuple_of(integer(2), "prefix lengths >= 2", nonempty=True),
        "fewshot_prefix": POSITIVE_INT.note("prompt tokens tuned before the eos format"),
    }

    def __post_init__(self) -> None:
        require(self, "neumann_positions", all(p <= self.seq_len for p in self.neumann_positions),
                f"prefix lengths in [2, seq_len = {self.seq_len}]")
        require(self, "fewshot_examples", 3 * self.fewshot_examples + self.fewshot_prefix <= self.seq_len,
                f"at most (seq_len − fewshot_prefix) / 3 examples, so the eos format fits the trained length "
                f"{self.seq_len}")
        # The probe-context windows (claims.py) need positions d + 1 … d + 5 inside the sequence.
        require(self, "seq_len", self.seq_len >= self.d + 8, f"at least d + 8 = {self.d + 8} (the probe windows)")
        # The models the study trains, as deep.train builds them, their errors in this config's keys.
        keys = {**same_keys("d", "seq_len", "noise"), "TransformerConfig.clip": "act_clip",
                "TransformerConfig.init_scale": "init_std", "TransformerConfig.d_head": "deep_key",
                "TransformerConfig.n_layers": "depths"}
        for name in (*(f"linear-{k}" for k in self.depths), f"softmax-raw-{self.raw_layers}"):
            with inner_keys(self, keys, where=f"the model {name!r}"):
                model_setup(name, self.d, self.seq_len, self.noise, self.init_std, self.act_clip,
                            key_size=self.deep_key)


PRESETS = {
    "smoke": Config(seeds=3, seq_len=20, depths=(2,), deep_key=8, deep_steps=30, deep_batch_size=16, raw_steps=30,
                    raw_batch_size=16, chunk_steps=15, eval_batch_size=32, n_test=64, n_probe=64,
                    interpolation_points=3, neumann_depths=(1, 4, 8), neumann_positions=(11, 20), neumann_systems=4,
                    fewshot_examples=5, fewshot_prefix=2, fewshot_steps=10, fewshot_batch_size=8, fewshot_test=32),
    "cpu": Config(),
    # The paper's sizes: 2–6-layer stacks trained 20k steps at batch 256 (a GPU setting).
    "paper": Config(seeds=5, depths=(2, 4, 6), deep_steps=20_000, deep_batch_size=256, raw_steps=20_000,
                    raw_batch_size=256, warmup_steps=1000, n_test=2560, n_probe=4096, fewshot_test=2560),
}


def training(cfg: Config, steps: int, batch: int, lr: float) -> TrainConfig:
    """AdamW with warm-up and cosine decay to lr/30 at the end of `steps`, element-wise clipping (mesa-dynamics)."""
    return TrainConfig(steps=steps, batch_size=batch, optimizer="adamw", lr=lr, weight_decay=cfg.weight_decay,
                       clip_value=cfg.grad_clip, schedule="warmup_cosine", warmup_steps=min(cfg.warmup_steps, steps - 1),
                       end_lr=lr / 30, chunk_steps=cfg.chunk_steps, eval_batch_size=cfg.eval_batch_size)
