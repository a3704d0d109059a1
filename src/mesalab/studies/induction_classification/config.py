"""The study's configuration, presets, model and training set-up."""

from __future__ import annotations

import math

from mesalab.config import (
    FRACTION, NONNEGATIVE, NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, config, inner_keys, integer, one_of, same_keys,
    tuple_of,
)
from mesalab.models.transformer import TransformerConfig
from mesalab.studies.induction_classification.transience import transience_task
from mesalab.studies.protocol import Experiment
from mesalab.tasks.classification import ClassificationConfig
from mesalab.train import TrainConfig


@config
class Config:
    """Task (main part): n_classes K, n_labels L, n_pairs N, dim D, max_pairs Nmax, eps, burstiness B, p_bursty,
    p_novel. Training: optimizer ("adam" or "sgd"), lr, weight_decay, steps, batch_size, chunk_steps (metric
    resolution of the main and control parts, whose curves are measured), sweep_chunk_steps (that of the sweeps,
    which only use final accuracies), eval_size (sequences per test set), seeds. burst_*: the burstiness sweep
    (p_novel = 0, B = burst_values, K = burst_classes). phase_*: the other phase-diagram axes around the burstiness
    sweep's task at B = phase_burstiness: a second K row (phase_classes × burst_values), ε ∈ phase_eps and Zipf
    α ∈ phase_alpha (ε and α are per-member task values, so each of those sweeps is one vmapped ensemble).
    transience_*: the transience part (transience.py), off at transience_steps = 0 (the cpu preset)."""

    n_classes: int = 256
    n_labels: int = 32
    n_pairs: int = 8
    dim: int = 31
    # Nmax > N, as in the author's generator (Nmax = 32, N = 8): each sequence's 2N + 1 position one-hots start at a
    # random offset in {0, …, 2(Nmax − N)}, so absolute positions carry no shortcut (review S4-D2: with Nmax = N the
    # offset was always 0). 12 gives 9 offsets at 56-wide tokens, where the author's 32 gives 49 at 128.
    max_pairs: int = 12
    eps: float = 0.1
    burstiness: int = 1
    p_bursty: float = 1.0
    p_novel: float = 0.8
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    steps: int = 3000
    batch_size: int = 128
    # Linear interpolation between coarse samples widens a cliff and shortens the plateau before it: the same four
    # runs measured width/plateau 0.239, 0.202, 0.192 and 0.188 (median) from samples every 100, 50, 20 and 10 steps.
    # The abruptness row records the verdict under 50-step sampling of the same run (claims.OLD_SAMPLING).
    chunk_steps: int = 10
    sweep_chunk_steps: int = 250
    eval_size: int = 512
    seeds: int = 4
    control: bool = True
    burst_values: tuple[int, ...] = (0, 1, 2, 4)
    burst_classes: int = 512
    burst_seeds: int = 4
    burst_steps: int = 3000
    phase_classes: int = 128
    phase_burstiness: int = 2
    phase_eps: tuple[float, ...] = (0.0, 0.4, 0.8, 1.6, 3.2)
    phase_alpha: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
    phase_seeds: int = 4
    phase_steps: int = 2000
    # Transience (transience.py; Singh et al. 2023): off at 0 steps. Chan et al.'s 1,600 classes (Omniglot, which
    # Singh et al. train on), p_B = 0.9 and Zipf α = 1 for the non-bursty rest; λ the L2 coefficient of the second
    # ensemble.
    transience_steps: int = 0
    transience_classes: int = 1600
    transience_seeds: int = 4
    transience_chunk_steps: int = 1000
    transience_l2: float = 1e-4
    transience_p_bursty: float = 0.9
    transience_alpha: float = 1.0

    RULES = {
        **dict.fromkeys(("n_classes", "n_labels", "dim", "max_pairs", "steps", "batch_size", "chunk_steps",
                         "sweep_chunk_steps", "eval_size", "seeds", "burst_classes", "burst_seeds", "burst_steps",
                         "phase_classes", "phase_seeds", "phase_steps", "transience_seeds", "transience_classes",
                         "transience_chunk_steps"), POSITIVE_INT),
        "transience_steps": NONNEGATIVE_INT.note("0: the transience part is not run"),
        "transience_l2": POSITIVE,
        "transience_p_bursty": FRACTION,
        "transience_alpha": NONNEGATIVE,
        "n_pairs": integer(2),
        **dict.fromkeys(("burstiness", "phase_burstiness"), NONNEGATIVE_INT.note("0: non-bursty")),
        "eps": NONNEGATIVE,
        **dict.fromkeys(("p_bursty", "p_novel"), FRACTION),
        "optimizer": one_of("adam", "sgd"),
        "lr": POSITIVE,
        "weight_decay": NONNEGATIVE,
        "burst_values": tuple_of(NONNEGATIVE_INT, "burstiness values >= 0 (0: non-bursty)"),
        "phase_eps": tuple_of(NONNEGATIVE, "noise levels >= 0"),
        "phase_alpha": tuple_of(NONNEGATIVE, "Zipf exponents >= 0"),
    }

    def __post_init__(self) -> None:
        # Every task the study trains on, as built below, its errors naming this config's keys (B dividing N, K a
        # multiple of L, ...).
        task_keys = same_keys("n_classes", "n_labels", "n_pairs", "dim", "max_pairs", "eps", "burstiness",
                              "p_bursty", "p_novel")
        with inner_keys(self, task_keys, where="the main task"):
            self.task()
        if self.control:
            with inner_keys(self, {**task_keys, "n_labels": "n_pairs"}, where="the L = N control's task, whose "
                            "n_labels is n_pairs"):
                self.control_task()
        sweep_keys = {**task_keys, "n_classes": "burst_classes", "burstiness": "burst_values"}
        for b in self.burst_values:
            with inner_keys(self, sweep_keys, where=f"the burstiness sweep's task at B = {b}"):
                self.burst_task(b)
            with inner_keys(self, {**sweep_keys, "n_classes": "phase_classes"},
                            where=f"the phase diagram's task at K = {self.phase_classes}, B = {b}"):
                self.burst_task(b, self.phase_classes)
        with inner_keys(self, {**task_keys, "n_classes": "transience_classes", "p_bursty": "transience_p_bursty",
                               "zipf_alpha": "transience_alpha"},
                        where="the transience part's task"):
            transience_task(self)
        with inner_keys(self, {**sweep_keys, "burstiness": "phase_burstiness"},
                        where=f"the phase diagrams' task at B = {self.phase_burstiness}"):
            self.burst_task(self.phase_burstiness)

    def task(self) -> ClassificationConfig:
        """The main part's task."""
        return _task(self)

    def control_task(self) -> ClassificationConfig:
        """The main task with L = N."""
        return _task(self, n_labels=self.n_pairs)

    def burst_task(self, b: int, classes: int | None = None) -> ClassificationConfig:
        """The burstiness sweep's task at burstiness b (no novel classes), with burst_classes classes unless told."""
        return _task(self, n_classes=classes or self.burst_classes, burstiness=b, p_novel=0.0)


def _task(cfg: Config, **changes) -> ClassificationConfig:
    fields = dict(n_classes=cfg.n_classes, n_labels=cfg.n_labels, n_pairs=cfg.n_pairs, dim=cfg.dim,
                  max_pairs=cfg.max_pairs, eps=cfg.eps, burstiness=cfg.burstiness, p_bursty=cfg.p_bursty,
                  p_novel=cfg.p_novel)
    return ClassificationConfig(**{**fields, **changes})


PRESETS = {
    # smoke: phase_classes = burst_classes skips the second K row (its row is tested on synthetic results).
    "smoke": Config(n_classes=64, n_labels=16, n_pairs=4, dim=15, max_pairs=6, steps=60, chunk_steps=20,
                    sweep_chunk_steps=20, eval_size=64, seeds=4, burst_values=(0, 2), burst_classes=64,
                    burst_seeds=1, burst_steps=40, phase_classes=64, phase_eps=(0.0, 0.8),
                    phase_alpha=(0.0, 1.0, 1.5), phase_seeds=1, phase_steps=40, transience_steps=40, transience_classes=64,
                    transience_seeds=2, transience_chunk_steps=20),
    "cpu": Config(),
    # The author's setting: D = 63, Nmax = 32 (128-wide tokens), plain SGD at 0.01 with decay 1e-6 per step, 150k
    # steps, 6 seeds (a GPU setting).
    "paper": Config(dim=63, max_pairs=32, optimizer="sgd", lr=0.01, weight_decay=1e-4, steps=150_000,
                    chunk_steps=1000, sweep_chunk_steps=5000, eval_size=10_000, seeds=6, burst_classes=512,
                    burst_seeds=6, burst_steps=150_000, phase_seeds=6, phase_steps=150_000,
                    transience_steps=300_000, transience_seeds=6, transience_chunk_steps=2000),
}


def model_of(cfg: Config, task: ClassificationConfig) -> TransformerConfig:
    """Reddy's network on this task's tokens (init std 1/√D for Q, K, V; He-normal classifier)."""
    width = task.token_width
    return TransformerConfig(d_model=width, n_layers=2, n_heads=1, d_head=width, attention="softmax",
                             causal=True, scale_scores="none", out_proj=False, classifier_layers=3,
                             d_out=task.n_labels, init_scale=1 / math.sqrt(task.dim))


def training(cfg: Config, steps: int, chunk_steps: int | None = None) -> TrainConfig:
    # SGD's weight decay is an L2 term scaled by the rate: 0.01 × 1e-4 = the author's (1 − 1e-6) per step.
    return TrainConfig(steps=steps, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr,
                       weight_decay=cfg.weight_decay, chunk_steps=chunk_steps or cfg.chunk_steps,
                       eval_batch_size=cfg.batch_size)


def experiment(cfg: Config) -> Experiment:
    task = cfg.task()
    return Experiment(task, model_of(cfg, task), training(cfg, cfg.steps))
