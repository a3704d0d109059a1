"""Configuration of the induction-circuits study: the exemplar-label task, the authors' 2-layer 8-head model, the
training recipe, the clamped conditions and the data-dependence grids (reference/induction.md §3.2–3.4)."""

from __future__ import annotations

from mesalab.config import (
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    config,
    inner_keys,
    integer,
    require,
    same_keys,
    tuple_of,
)
from mesalab.models.transformer import TransformerConfig
from mesalab.studies.protocol import Experiment
from mesalab.tasks.exemplar_label import ExemplarLabelConfig
from mesalab.train import TrainConfig

N_HEADS = 8  # the authors' model: 2 layers × 8 heads of size 8 (d_model 64)


@config
class Config:
    """Task (tasks/exemplar_label.py): n_classes K training classes, n_labels L, dim D, eps ε, n_test_classes.
    Model: d_model, d_head (n_heads = d_model / d_head), init_scale (normal init std). Training: Adam at a constant
    lr, batch_size, steps for the unclamped runs and clamp_steps for the clamped ones (and scaling_steps for the
    grids, which are clamped too), metrics every chunk_steps in the unclamped runs and clamp_chunk_steps in the
    clamped ones (the phase-change step is known to that resolution), eval_size sequences per evaluator; seeds members each.
    kept_head: the layer-2 head kept when the others are ablated (the authors' 1:3); prev_head: the layer-1 head
    clamped to previous-token in condition "1" (the authors' 0:2). all_heads_clamped: train the clamped conditions
    with all layer-2 heads too, not only with one kept (the unclamped all-heads run is always trained: the head
    findings are about it; the smoke preset leaves the rest out, for time).
    class_grid: class counts (members of one ensemble through `classes_used`, trained with n_classes = the largest)
    for the match subcircuit's timing; label_grid: label counts (one ensemble each: L sets the shapes) for the copy
    subcircuit's; both with scaling_seeds seeds and scaling_steps steps. toy_dim, toy_steps: the rank-1 toy model."""

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
    clamp_steps: int = 600_000
    chunk_steps: int = 1000
    clamp_chunk_steps: int = 1000
    eval_size: int = 1000
    seeds: int = 4
    kept_head: int = 3
    all_heads_clamped: bool = True
    prev_head: int = 2
    class_grid: tuple[int, ...] = (50, 100, 200)
    label_grid: tuple[int, ...] = (5, 10, 15)
    scaling_seeds: int = 4
    scaling_steps: int = 300_000
    toy_dim: int = 20
    toy_steps: int = 1000

    RULES = {
        **dict.fromkeys(("dim", "n_test_classes", "d_model", "d_head", "batch_size", "steps", "clamp_steps",
                         "chunk_steps", "clamp_chunk_steps", "eval_size", "seeds", "scaling_seeds", "scaling_steps",
                         "toy_steps"), POSITIVE_INT),
        "n_classes": integer(2),
        "n_labels": integer(3),
        "toy_dim": integer(2),
        **dict.fromkeys(("eps",), NONNEGATIVE),
        **dict.fromkeys(("init_scale", "lr"), POSITIVE),
        "class_grid": tuple_of(integer(2), "class counts >= 2", nonempty=True),
        "label_grid": tuple_of(integer(3), "label counts >= 3", nonempty=True),
    }

    def __post_init__(self) -> None:
        require(self, "d_head", self.d_model % self.d_head == 0,
                f"a divisor of d_model = {self.d_model} (n_heads = d_model / d_head)")
        heads = self.d_model // self.d_head
        for f in ("kept_head", "prev_head"):
            require(self, f, isinstance(getattr(self, f), int) and 0 <= getattr(self, f) < heads,
                    f"a head index in [0, {heads}) (n_heads = d_model / d_head = {heads})")
        require(self, "class_grid", len(self.class_grid) >= 2 and list(self.class_grid) == sorted(set(self.class_grid)),
                "at least two increasing class counts (a rank correlation needs two points)")
        require(self, "label_grid", len(self.label_grid) >= 2 and list(self.label_grid) == sorted(set(self.label_grid)),
                "at least two increasing label counts")
        require(self, "toy_steps", self.toy_steps >= 100, "an integer >= 100 (the toy's plateau lasts hundreds)")
        task_keys = same_keys("n_classes", "n_labels", "dim", "eps", "n_test_classes")
        with inner_keys(self, task_keys, where="the main task"):
            self.task()
        with inner_keys(self, {**task_keys, "n_labels": "label_grid"}, where="the label grid's tasks"):
            for labels in self.label_grid:
                self.task(n_labels=labels)
        with inner_keys(self, {**task_keys, "n_classes": "class_grid"}, where="the class grid's task"):
            self.task(n_classes=max(self.class_grid))

    @property
    def n_heads(self) -> int:
        return self.d_model // self.d_head

    def task(self, **changes) -> ExemplarLabelConfig:
        """The task (the main one, or with `changes`, e.g. n_labels for the label grid)."""
        fields = {"n_classes": self.n_classes, "n_labels": self.n_labels, "dim": self.dim, "eps": self.eps,
                  "n_test_classes": self.n_test_classes}
        return ExemplarLabelConfig(**{**fields, **changes})


def model_of(cfg: Config, task: ExemplarLabelConfig) -> TransformerConfig:
    """The authors' model (reference/induction.md §3.2): 2 attention-only layers of d_model / d_head heads, causal,
    softmax, pre-LayerNorm, rotary positions; a linear embedding of the token (exemplar features with a bias, and a
    learned label embedding: tasks/exemplar_label.py) and an L-way read-out."""
    return TransformerConfig(d_model=cfg.d_model, n_layers=2, n_heads=cfg.n_heads, d_head=cfg.d_head,
                             attention="softmax", causal=True, layer_norm=True, d_in=task.token_width,
                             d_out=task.n_labels, pos_embedding="rope", init_scale=cfg.init_scale)


def training(cfg: Config, steps: int, chunk_steps: int | None = None) -> TrainConfig:
    """Adam at a constant rate, no weight decay (the authors' optax recipe)."""
    chunk = chunk_steps or cfg.chunk_steps
    return TrainConfig(steps=steps, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr,
                       chunk_steps=min(chunk, steps), eval_batch_size=cfg.eval_size)


def experiment(cfg: Config) -> Experiment:
    task = cfg.task()
    return Experiment(task, model_of(cfg, task), training(cfg, cfg.steps))


PRESETS = {
    "smoke": Config(n_classes=6, n_labels=4, dim=8, n_test_classes=4, d_model=16, d_head=4, init_scale=0.1, lr=3e-3,
                    steps=60, clamp_steps=60, chunk_steps=20, clamp_chunk_steps=20, eval_size=64, seeds=2, kept_head=1,
                    all_heads_clamped=False, prev_head=0,
                    class_grid=(3, 6), label_grid=(4, 5), scaling_seeds=2, scaling_steps=40, toy_steps=200),
    # The cpu recipe (the study docstring says how and why): K = 5 classes, Adam 1e-3, 20,000 steps unclamped; the
    # clamped runs get 4,000 steps, recorded every 50 (the earlier probe's clamped runs were below 0.1 by step 250 at
    # lr 3e-3, so ≈ 750 at 1e-3, set before any clamped run of this study); the grids double the class count as the
    # authors' 50 / 100 / 200 and keep their labels 5 / 10 / 15.
    "cpu": Config(n_classes=5, lr=1e-3, steps=20_000, clamp_steps=4000, chunk_steps=250, clamp_chunk_steps=50,
                  eval_size=512, class_grid=(5, 10, 20), label_grid=(5, 10, 15), scaling_steps=4000),
    # The authors' recipe: Adam 1e-5, batch 32, 10⁶ steps (6·10⁵ clamped), evaluations every 1,000 steps on 1,000
    # sequences; scaling runs 2·10⁶ (3·10⁵ clamped, which is what the grids train). A GPU setting.
    "paper": Config(),
}
