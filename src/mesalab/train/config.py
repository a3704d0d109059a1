"""Training hyperparameters."""

from __future__ import annotations

from mesalab.config import config, require, require_choice, require_nonnegative, require_positive


@config
class TrainConfig:
    """steps: optimizer steps; batch_size: fresh sequences per step (online data, as in every anchor paper).

    optimizer:    "adam", "adamw" (decoupled weight decay) or "sgd" (optional momentum).
    schedule:     "constant" or "warmup_cosine" (linear warm-up from 0 to lr over warmup_steps, then cosine to
                  end_lr at `decay_steps`; optax.warmup_cosine_decay_schedule). A member with its own learning rate
                  scales the whole schedule: its end value is end_lr × member_lr / lr.
    decay_steps:  where the cosine ends (0: at `steps`). Larger than `steps` trains on the start of a longer
                  schedule, as the mesa-optimization sandbox does (2.5k steps of a 20k-step schedule).
    clip_norm:    clip the global gradient norm (0: off). clip_value: clip each gradient entry to ±value (0: off;
                  the mesa-optimization code uses optax.clip(1), which is element-wise).
    chunk_steps:  steps per compiled `lax.scan` call; metrics, evaluation, checkpoints and the divergence check
                  happen at chunk boundaries.
    eval_batch_size: sequences in the fixed evaluation batch scored at every chunk boundary (0: no evaluation).
    ensemble_group: members vmapped together; groups run one after another inside the same compiled program.
                  0 chooses automatically (see `group_size`). Results do not depend on it beyond float rounding;
                  speed does: when one member's step is already large (batch × sequence), vmapping many members
                  overflows the CPU caches and each member gets slower (benchmarks/engine.py measures it).
    """

    steps: int = 1000
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    end_lr: float = 0.0
    decay_steps: int = 0
    clip_norm: float = 0.0
    clip_value: float = 0.0
    chunk_steps: int = 100
    eval_batch_size: int = 1024
    ensemble_group: int = 0

    def __post_init__(self) -> None:
        for f in ("steps", "batch_size", "chunk_steps"):
            v = getattr(self, f)
            require(self, f, isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer")
        require(self, "ensemble_group", isinstance(self.ensemble_group, int) and self.ensemble_group >= 0,
                "an integer >= 0 (0: automatic)")
        require_choice(self, "optimizer", ("adam", "adamw", "sgd"))
        require_choice(self, "schedule", ("constant", "warmup_cosine"))
        require_positive(self, "lr")
        require(self, "b1", 0 <= self.b1 < 1, "a number in [0, 1)")
        require(self, "b2", 0 <= self.b2 < 1, "a number in [0, 1)")
        require(self, "momentum", 0 <= self.momentum < 1, "a number in [0, 1)")
        require_nonnegative(self, "eps", "weight_decay", "end_lr", "clip_norm", "clip_value", "warmup_steps")
        require(self, "decay_steps", isinstance(self.decay_steps, int) and self.decay_steps >= 0,
                "an integer >= 0 (0: the schedule ends at `steps`)")
        limit = self.steps if self.schedule == "constant" else (self.decay_steps or self.steps) - 1
        require(self, "warmup_steps", self.warmup_steps <= limit,
                f"an integer in [0, {limit}] (warm-up must end before the schedule does)")
        require(self, "eval_batch_size", isinstance(self.eval_batch_size, int) and self.eval_batch_size >= 0,
                "an integer >= 0 (0: no evaluation)")


# Bytes of cached activations (every site, one optimizer step) that one vmapped group may hold when
# ensemble_group = 0. Measured on a 2-core CPU (benchmarks/engine.py): for the 1-layer LSA at batch 2048
# (≈ 12 MB per member) groups of 8 ran 1.14× as fast per member as one member alone and all 64 at once 0.79×;
# for the 2-layer dynamics model at batch 256 (≈ 90 MB per member) one at a time ran 0.91× and all 64 0.41×.
AUTO_GROUP_BYTES = 100 * 2**20


def group_size(cfg: TrainConfig, member_bytes: int, members: int) -> int:
    """Members per vmapped group: cfg.ensemble_group, or as many as fit AUTO_GROUP_BYTES when it is 0."""
    if cfg.ensemble_group:
        return min(cfg.ensemble_group, members)
    return max(1, min(members, AUTO_GROUP_BYTES // max(1, member_bytes)))


def adam_warmup_cosine(steps: int, batch_size: int, lr: float, *, b2: float = 0.999, chunk_steps: int = 100,
                       eval_batch_size: int = 1024, clip_norm: float = 10.0) -> TrainConfig:
    """Adam with linear warm-up (a tenth of training, at most 200 steps), cosine decay to lr/10 and global-norm
    clipping: the recipe the studies use for models that start on a long loss plateau."""
    return TrainConfig(steps=steps, batch_size=batch_size, optimizer="adam", lr=lr, b2=b2, clip_norm=clip_norm,
                       schedule="warmup_cosine", warmup_steps=min(200, steps // 10), end_lr=lr / 10,
                       chunk_steps=chunk_steps, eval_batch_size=eval_batch_size)
