"""Configuration of the attention-saes study: the frozen S6 model (task, model and recipe of `induction-circuits`),
the SAE ensembles on its hook_z, and the checkpoint timeline (reference/induction.md §3.2, §5.2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mesalab.analysis.sae import SAEConfig
from mesalab.config import (
    Rule,
    NONNEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    config,
    inner_keys,
    integer,
    require,
    tuple_of,
)
from mesalab.studies import induction_circuits as s6
from mesalab.studies.protocol import Experiment

# The S6 keys this study shares with `induction-circuits` (its Config documents them).
S6_KEYS = ("n_classes", "n_labels", "dim", "eps", "n_test_classes", "d_model", "d_head", "init_scale", "lr",
           "batch_size", "steps", "chunk_steps", "eval_size", "seeds")


@config
class Config:
    """The frozen model (S6 `induction-circuits`, unclamped, all heads): n_classes … init_scale as there; lr,
    batch_size, steps, chunk_steps (evaluations, and the phase-change step's resolution), eval_size, seeds base
    models. from_run: an `induction-circuits` run folder whose unclamped all-heads models ("none-all") are analysed
    instead of training them here (its task and model keys replace these; the timeline is then not run).

    SAEs (analysis/sae.py, Kissane's recipe unless noted): layers whose hook_z is encoded (each an ensemble), with
    `layer`, the one the findings read, always among them (`sae_layers`); expansion d_sae / d_in; l1_scales c: λ = c · E‖x‖ (the mean hook_z norm of the model at
    hand, measured on one batch before training, so that one grid fits trained and untrained models alike: the L1
    term λ‖f‖₁ grows as ‖x‖ and the squared error as ‖x‖²); sae_seeds; sae_steps, sae_batch (sequences of 5 tokens
    per step), sae_lr, sae_warmup; resample_every, max_resamples (dead-feature resampling); eval_batch sequences
    for the metrics and the families.

    Timeline (beyond the paper): timeline_every: SAEs on the checkpoints every this many steps of the base training
    (a multiple of chunk_steps; 0: no timeline), with timeline_scale (one λ) and one SAE seed, timeline_steps steps,
    one vmapped ensemble over the checkpoints.

    s8_from_run: an `in-context-language-learning` run whose transformers (largest N, one per seed) get the same SAE
    ensemble on their last layer's hook_z, for the n-gram family (ngram.py); '': that row is not run."""

    n_classes: int = 50
    n_labels: int = 5
    dim: int = 64
    eps: float = 0.5
    n_test_classes: int = 100
    d_model: int = 64
    d_head: int = 8
    init_scale: float = 0.02
    lr: float = 1e-5
    batch_size: int = 32
    steps: int = 1_000_000
    chunk_steps: int = 1000
    eval_size: int = 1000
    seeds: int = 4
    from_run: str = ""
    layers: tuple[int, ...] = (0, 1)
    layer: int = 1
    expansion: int = 32
    l1_scales: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    sae_seeds: int = 2
    sae_steps: int = 24_414
    sae_batch: int = 820
    sae_lr: float = 1.2e-3
    sae_warmup: int = 1000
    resample_every: int = 25_000
    max_resamples: int = 4
    eval_batch: int = 1000
    timeline_every: int = 100_000
    timeline_scale: float = 0.1
    timeline_steps: int = 24_414
    s8_from_run: str = ""

    RULES = {
        **dict.fromkeys(("dim", "n_test_classes", "d_model", "d_head", "batch_size", "steps", "chunk_steps",
                         "eval_size", "seeds", "expansion", "sae_seeds", "sae_steps", "sae_batch", "eval_batch",
                         "timeline_steps"), POSITIVE_INT),
        **dict.fromkeys(("sae_warmup", "resample_every", "max_resamples", "timeline_every"), NONNEGATIVE_INT),
        "n_classes": integer(2), "n_labels": integer(3),
        **dict.fromkeys(("init_scale", "lr", "sae_lr", "timeline_scale"), POSITIVE),
        "layers": tuple_of(integer(0), "layer indices (0 or 1)", nonempty=True),
        "layer": integer(0),
        "l1_scales": tuple_of(POSITIVE, "numbers > 0", nonempty=True),
        "from_run": Rule(lambda v: isinstance(v, str) and (v == "" or Path(v).is_dir()),
                         "'' (train the model here) or the folder of an induction-circuits run"),
        "s8_from_run": Rule(lambda v: isinstance(v, str) and (v == "" or Path(v).is_dir()),
                            "'' (no S8 model) or the folder of an in-context-language-learning run"),
    }

    def __post_init__(self) -> None:
        require(self, "layers", all(x in (0, 1) for x in self.layers) and len(set(self.layers)) == len(self.layers),
                "distinct layer indices of the 2-layer model (0, 1)")
        require(self, "layer", self.layer in (0, 1), "a layer index of the 2-layer model (0 or 1)")
        require(self, "timeline_every", self.timeline_every % self.chunk_steps == 0,
                f"a multiple of chunk_steps = {self.chunk_steps} (checkpoints fall on chunk boundaries)")
        # the S6 keys are validated by S6's own config; the SAE keys by SAEConfig
        with inner_keys(self, {k: k for k in S6_KEYS}, where="the frozen S6 model"):
            self.s6()
        with inner_keys(self, {"expansion": "expansion", "seeds": "sae_seeds", "steps": "sae_steps",
                               "batch_size": "sae_batch", "lr": "sae_lr", "warmup_steps": "sae_warmup",
                               "resample_every": "resample_every", "max_resamples": "max_resamples"},
                        where="the SAE ensembles"):
            self.sae(self.layer, 1.0)

    @property
    def n_heads(self) -> int:
        return self.d_model // self.d_head

    def s6(self) -> s6.Config:
        """The S6 config of the frozen model (its other keys at their defaults; only the unclamped run is used)."""
        return dataclasses.replace(s6.PRESETS["cpu"], **{k: getattr(self, k) for k in S6_KEYS})

    @property
    def sae_layers(self) -> tuple[int, ...]:
        """The layers whose SAEs are trained: `layers` and the findings' `layer`."""
        return tuple(sorted({*self.layers, self.layer}))

    def sae(self, layer: int, x_norm: float, *, timeline: bool = False) -> SAEConfig:
        """The SAE ensemble on `blocks.{layer}.attn.hook_z` of a model whose mean hook_z norm is x_norm: λ = c·x_norm
        for each c of l1_scales (timeline: timeline_scale alone, one seed, no resampling: see parts.timeline)."""
        scales = (self.timeline_scale,) if timeline else self.l1_scales
        # resample_batches: enough 5-token sequences that the pool holds one token per feature (sae.py requires it)
        d_sae = self.expansion * self.n_heads * self.d_head
        pool = -(-d_sae // (self.sae_batch * 5))
        return SAEConfig(site=f"blocks.{layer}.attn.hook_z", expansion=self.expansion,
                         l1_coeffs=tuple(float(c * x_norm) for c in scales),
                         seeds=(0,) if timeline else tuple(range(self.sae_seeds)),
                         steps=self.timeline_steps if timeline else self.sae_steps, batch_size=self.sae_batch,
                         lr=self.sae_lr, warmup_steps=self.sae_warmup, resample_every=0 if timeline else
                         self.resample_every, max_resamples=self.max_resamples, resample_batches=max(pool, 1),
                         chunk_steps=self.timeline_steps if timeline else self.sae_steps)


def experiment(cfg: Config) -> Experiment:
    """The frozen model's training set-up (what `mesalab sweep` would run)."""
    return s6.experiment(cfg.s6())


PRESETS = {
    "smoke": Config(n_classes=6, n_labels=4, dim=8, n_test_classes=4, d_model=16, d_head=4, init_scale=0.1, lr=3e-3,
                    steps=60, chunk_steps=20, eval_size=64, seeds=2, layers=(1,), layer=1, expansion=2,
                    l1_scales=(0.1, 1.0), sae_seeds=1, sae_steps=40, sae_batch=16, sae_lr=1e-2, sae_warmup=5,
                    resample_every=20, max_resamples=1, eval_batch=64, timeline_every=20, timeline_steps=20),
    # The cpu recipe (study docstring): the S6 cpu model (K = 5 classes, Adam 1e-3, batch 32), 12,000 steps (1.5×
    # the latest phase change of S6's probes, 8,000), 3 seeds; SAEs 8× wide on both layers, 4 λ × 2 seeds,
    # 3,000 steps of 32 sequences, lr 3e-3; the timeline every 1,500 steps.
    "cpu": Config(n_classes=5, lr=1e-3, steps=12_000, chunk_steps=250, eval_size=512, seeds=3, expansion=8,
                  sae_steps=3000, sae_batch=32, sae_lr=3e-3, sae_warmup=200, resample_every=1000, max_resamples=2,
                  eval_batch=512, timeline_every=1500, timeline_steps=1000),
    # Kissane's SAE recipe (32× wide, 4,096 tokens per step, lr 1.2e-3, resampling every 25,000 steps, 4 times;
    # ≈ 1e8 tokens) on the S6 authors' model and recipe (Adam 1e-5, 10⁶ steps, K = 50). A GPU setting.
    "paper": Config(),
}
