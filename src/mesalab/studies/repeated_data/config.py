"""Configuration of the repeated-data study: the copying LM data with its repeated subset, the r sweep, the two
small models (attention-only and with MLPs) and their training."""

from __future__ import annotations

from mesalab.config import (
    FRACTION,
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Rule,
    config,
    inner_keys,
    require,
    same_keys,
    tuple_of,
)
from mesalab.models.config import TransformerConfig
from mesalab.studies.repeated_data.task import RepeatedConfig
from mesalab.train import TrainConfig

PARTS = ("attention-only", "mlp")  # the two models: attention-only, and the same with MLPs (d_mlp = 4·d)


@config
class Config:
    """Data (task.py): n_tokens, seq_len, span, zipf; repeated_fraction: the share of training tokens from the
    repeated subset (Hernandez et al.'s headline: 10%); repeats: the grid of r, each sequence of the subset seen r
    times on average, the subset holding repeated_fraction · batch_size · steps / r sequences (r = 1: no
    repetition, the null). Model: n_layers, d_model, n_heads (d_head = d_model / n_heads), learned positions,
    pre-LayerNorm (layer_norm), normal init of std init_scale; parts: which of the two models train. Training: Adam at lr with warm-up, batch_size, steps,
    metrics every chunk_steps on eval_batch_size sequences; seeds per r. repeat_blocks: the block lengths of
    Olsson's prefix-matching sequences (BOS + a block of distinct random tokens, repeated as often as fits)."""

    n_tokens: int = 64
    seq_len: int = 32
    span: int = 8
    zipf: float = 1.0
    repeated_fraction: float = 0.1
    repeats: tuple[int, ...] = (1, 4, 16, 64, 256)
    parts: tuple[str, ...] = PARTS
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    # The recipe, chosen on the r = 1 runs alone (the null, 2 seeds each, 3,000 steps, batch 32, attention-only)
    # before any finding was judged: with pre-LayerNorm, init 0.02 and Adam 1e-3 no seed formed an induction head
    # (span 6: prefix matching stayed at chance, 0.12; span 8: the copy loss fell only to log 8 ≈ 2.08, "predict any
    # span token seen", with prefix matching at chance), and 3e-3 or 1e-2 learned less. Without LayerNorm (S5's
    # model), init 0.07: lr 1e-3 learned nothing, 3e-3 formed the head in one seed of two by step 1,250; init 0.1:
    # lr 2e-3 and 3e-3 formed it in both seeds (3e-3 by step 1,000; copy loss 0.33–0.42, prefix matching 0.42–0.50
    # at 3,000, flat over the last quarter). So: span 8, no LayerNorm, init 0.1, lr 3e-3, 3,000 steps.
    layer_norm: bool = False
    init_scale: float = 0.1
    seeds: int = 2
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 100
    chunk_steps: int = 100
    eval_batch_size: int = 512
    repeat_blocks: tuple[int, ...] = (4, 7, 10)

    RULES = {
        **dict.fromkeys(("n_tokens", "seq_len", "span", "n_layers", "d_model", "n_heads", "seeds", "steps",
                         "batch_size", "chunk_steps", "eval_batch_size", "warmup_steps"), POSITIVE_INT),
        **dict.fromkeys(("lr", "init_scale"), POSITIVE),
        "repeated_fraction": FRACTION,
        "zipf": NONNEGATIVE,
        "layer_norm": Rule(lambda v: isinstance(v, bool), "True or False"),
        "parts": Rule(lambda v: isinstance(v, tuple) and len(v) > 0 and len(set(v)) == len(v) and set(v) <= set(PARTS),
                      f"a non-empty tuple of distinct names from {PARTS}"),
        "repeats": tuple_of(POSITIVE_INT, "positive integers", nonempty=True),
        "repeat_blocks": tuple_of(POSITIVE_INT, "positive integers", nonempty=True),
    }

    def __post_init__(self) -> None:
        require(self, "repeats", self.repeats[0] == 1 and len(self.repeats) >= 3
                and list(self.repeats) == sorted(set(self.repeats)),
                "at least 3 increasing, distinct counts starting at 1 (r = 1 is the null; a peak needs an interior r)")
        require(self, "n_layers", self.n_layers >= 2, "at least 2 (an induction head needs two layers)")
        require(self, "d_model", self.d_model % self.n_heads == 0, f"a multiple of n_heads ({self.n_heads})")
        require(self, "warmup_steps", self.warmup_steps < self.steps, f"fewer than steps ({self.steps})")
        require(self, "repeated_fraction", 0 < self.repeated_fraction < 1 and round(
            self.repeated_fraction * self.batch_size) >= 1, f"in (0, 1), at least one row of a batch of {self.batch_size}")
        require(self, "repeats", subset_size(self, self.repeats[-1]) >= 1,
                f"at most the subset rows drawn in training ({subset_rows(self)}), so the largest r has a sequence")
        with inner_keys(self, same_keys("n_tokens", "seq_len", "span", "zipf", "repeated_fraction"),
                        where="the repeated-data task"):
            task = task_of(self)
        room = self.seq_len - 1
        require(self, "repeat_blocks", all(2 <= b <= min(room // 2, task.n_tokens) for b in self.repeat_blocks),
                f"block lengths in [2, {min(room // 2, task.n_tokens)}]: each block fits twice after BOS")


def subset_rows(cfg: Config) -> int:
    """D: the rows drawn from the repeated subset over training."""
    return task_of(cfg).repeated_rows(cfg.batch_size) * cfg.steps


def subset_size(cfg: Config, r: int) -> int:
    """Distinct sequences in the subset for repetition count r (0 at r = 1: every row fresh)."""
    return 0 if r == 1 else round(subset_rows(cfg) / r)


def task_of(cfg: Config, r: int = 1) -> RepeatedConfig:
    return RepeatedConfig(n_tokens=cfg.n_tokens, seq_len=cfg.seq_len, span=cfg.span, zipf=cfg.zipf,
                          repeated_fraction=cfg.repeated_fraction, subset_size=float(subset_size(cfg, r)))


def model_of(cfg: Config, part: str) -> TransformerConfig:
    task = task_of(cfg)
    return TransformerConfig(d_in=task.vocab_size, d_out=task.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                             n_heads=cfg.n_heads, d_head=cfg.d_model // cfg.n_heads, attention="softmax", causal=True,
                             d_mlp=4 * cfg.d_model if part == "mlp" else 0, layer_norm=cfg.layer_norm,
                             pos_embedding="learned", max_len=cfg.seq_len, init_scale=cfg.init_scale)


def training(cfg: Config) -> TrainConfig:
    return TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr,
                       schedule="warmup_cosine", warmup_steps=cfg.warmup_steps, chunk_steps=cfg.chunk_steps,
                       eval_batch_size=cfg.eval_batch_size)


PRESETS = {
    "smoke": Config(n_tokens=16, seq_len=16, span=3, repeats=(1, 4, 16), parts=("attention-only",), d_model=16,
                    n_heads=2, seeds=1, steps=30, batch_size=20, warmup_steps=5, chunk_steps=30, eval_batch_size=40,
                    repeat_blocks=(3,)),
    "cpu": Config(),
    # Hernandez et al.'s models (1.5M–800M parameters, 100B tokens) are far beyond a toy; this is the paper-scale
    # analogue of the sweep: their 0.1%-repeated-100-times point and a wider r grid, longer training, more seeds.
    "paper": Config(n_tokens=512, seq_len=128, span=16, repeats=(1, 4, 16, 64, 256, 1024, 4096), d_model=256,
                    n_heads=8, seeds=5, steps=100_000, batch_size=64, lr=3e-4, warmup_steps=2000, chunk_steps=1000,
                    eval_batch_size=1024, repeat_blocks=(16, 25, 32)),
}
