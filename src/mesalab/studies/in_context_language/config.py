"""Configuration of the in-context-language-learning study: REGBENCH at a context length, the model grid (one
ensemble per architecture, every N and seed a member), the training recipe and the evaluation sizes."""

from __future__ import annotations

from mesalab.config import (
    NONNEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    config,
    inner_keys,
    integer,
    one_of,
    require,
    tuple_of,
)
from mesalab.models.config import TransformerConfig
from mesalab.studies.in_context_language.data import PrefixTask
from mesalab.tasks.dfa import RegbenchConfig
from mesalab.train import TrainConfig

VOCAB = 20  # REGBENCH: PAD, 18 letters, SEP (tasks/dfa_generate.py)
# The model grid: name → (mixer of the base layers, whether n-gram layers of orders `ngram_orders` are inserted
# after the first base layer, width key). The authors' hybrids put n-gram layers k = 1, 2, 3 after one GLA / RetNet
# layer (reference/icll.md §1.7, configs/experiment/dfa/hybrid_gla.yaml): the paper preset's orders; the cpu
# preset's are k = 1, 2 (the in-context 2- and 3-gram the baselines are), for time.
ARCHS = {
    "transformer": ("softmax", False, "d_attn"),
    "linear": ("linear", False, "d_attn"),
    "mesa": ("mesa", False, "d_attn"),
    "lstm": ("lstm", False, "d_lstm"),
    "ssm": ("ssm", False, "d_ssm"),
    "linear+ngram": ("linear", True, "d_attn"),
    "lstm+ngram": ("lstm", True, "d_lstm"),
}
# Models with attention keep the GPT-2 layout (MLP 4·d, learned positions); the recurrent ones the authors'
# `lm_simple_noffn` (no MLP, no positions), as in their configs (reference/icll.md §1.5).
ATTENTION_MIXERS = ("softmax", "linear", "mesa")
# Pairs (with n-gram layers, without) of finding 4.
HYBRIDS = {"linear+ngram": "linear", "lstm+ngram": "lstm"}
RECURRENT = ("lstm", "ssm")  # the recurrent and SSM models of finding 2


@config
class Config:
    """Task (tasks/dfa.py, the authors' generator): prompts cut to max_len input positions; n_grid: the training-set
    sizes N (prompts, one DFA each; one data set of the largest N, each member using its first N); n_test test DFAs
    (disjoint from training), eval_prompts of them scored, head_prompts of them for the n-gram-head scores.
    Models: `models` from ARCHS, n_layers base layers each; attention models d_attn wide with n_heads heads and
    MLP 4·d_attn; LSTM d_lstm and SSM d_ssm wide (chosen for a comparable parameter count; ssm_state its state
    size); the "+ngram" models insert n-gram layers of orders ngram_orders (k: matching the last k tokens). Training: AdamW (weight_decay) at lr with warm-up and cosine decay, batch_size, steps; seeds per N."""

    max_len: int = 128
    n_grid: tuple[int, ...] = (1000, 2500)
    n_test: int = 500
    eval_prompts: int = 500
    head_prompts: int = 64
    models: tuple[str, ...] = ("transformer", "linear", "lstm", "ssm", "linear+ngram", "lstm+ngram")
    n_layers: int = 2
    d_attn: int = 64
    n_heads: int = 2
    d_lstm: int = 80
    d_ssm: int = 88
    ssm_state: int = 8
    ngram_orders: tuple[int, ...] = (1, 2)
    seeds: int = 2
    # The cpu recipe (the package docstring says how it was chosen): 700 steps of batch 32 at lr 1e-3.
    steps: int = 700
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 70
    chunk_steps: int = 175
    eval_batch_size: int = 64

    RULES = {
        **dict.fromkeys(("n_test", "eval_prompts", "head_prompts", "n_layers", "d_attn", "n_heads",
                         "d_lstm", "d_ssm", "ssm_state", "seeds", "steps", "batch_size", "chunk_steps",
                         "eval_batch_size"), POSITIVE_INT),
        "n_grid": tuple_of(integer(1), "integers >= 1", nonempty=True),
        "ngram_orders": tuple_of(integer(1), "n-gram layer orders k >= 1", nonempty=True),
        "models": tuple_of(one_of(*ARCHS), "names from " + ", ".join(ARCHS), nonempty=True),
        "max_len": integer(0).note("0: whole prompts, nothing cut"),
        "lr": POSITIVE,
        "weight_decay": NONNEGATIVE,
        "warmup_steps": integer(0),
    }

    def __post_init__(self) -> None:
        require(self, "n_grid", list(self.n_grid) == sorted(set(self.n_grid)), "increasing, distinct sizes")
        require(self, "models", "transformer" in self.models and len(set(self.models)) == len(self.models),
                "distinct names that include 'transformer' (every finding compares with it)")
        require(self, "eval_prompts", self.eval_prompts <= self.n_test, f"at most n_test = {self.n_test}")
        require(self, "head_prompts", self.head_prompts <= self.n_test, f"at most n_test = {self.n_test}")
        require(self, "d_attn", self.d_attn % self.n_heads == 0, f"a multiple of n_heads ({self.n_heads})")
        require(self, "warmup_steps", self.warmup_steps < self.steps, f"fewer than steps ({self.steps})")
        with inner_keys(self, {"n_train": "n_grid", "n_test": "n_test", "max_len": "max_len"},
                        where="the REGBENCH data"):
            data_of(self)
        for name in self.models:
            with inner_keys(self, {"d_model": ARCHS[name][2], "n_heads": "n_heads", "n_layers": "n_layers",
                                   "ssm_state": "ssm_state"}, where=f"the {name!r} model"):
                model_of(self, name)


def data_of(cfg: Config, split: str = "train") -> RegbenchConfig:
    """The one REGBENCH data set of the study: the largest N training DFAs, n_test test DFAs, no validation split
    (no model selection is done)."""
    return RegbenchConfig(n_train=max(cfg.n_grid), n_test=cfg.n_test, n_val=0, split=split, max_len=cfg.max_len)


def task_of(cfg: Config, n: int | None = None) -> PrefixTask:
    return PrefixTask(data_of(cfg), float(n or max(cfg.n_grid)))


def kinds_of(cfg: Config, name: str) -> tuple[str, ...]:
    base, inserted, _ = ARCHS[name]
    ngrams = tuple(f"ngram{k}" for k in cfg.ngram_orders) if inserted else ()
    return (base,) + ngrams + (base,) * (cfg.n_layers - 1)


def model_of(cfg: Config, name: str) -> TransformerConfig:
    base, _, width = ARCHS[name]
    d = getattr(cfg, width)
    attention = base in ATTENTION_MIXERS
    kinds = kinds_of(cfg, name)
    return TransformerConfig(
        d_model=d, n_layers=len(kinds), n_heads=cfg.n_heads if attention else 1,
        d_head=d // cfg.n_heads if attention else d, attention=kinds, d_mlp=4 * d if attention else 0,
        layer_norm=True, d_in=VOCAB, d_out=VOCAB, pos_embedding="learned" if attention else "none",
        max_len=data_of(cfg).seq_len if attention else 0, ssm_state=cfg.ssm_state)


def training(cfg: Config) -> TrainConfig:
    return TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr,
                       weight_decay=cfg.weight_decay, schedule="warmup_cosine", warmup_steps=cfg.warmup_steps,
                       chunk_steps=cfg.chunk_steps, eval_batch_size=cfg.eval_batch_size)


PRESETS = {
    "smoke": Config(max_len=32, n_grid=(40, 80), n_test=16, eval_prompts=16, head_prompts=4,
                    models=("transformer", "lstm", "lstm+ngram"), n_layers=1, d_attn=8, n_heads=2, d_lstm=8,
                    d_ssm=8, ssm_state=4, seeds=1, steps=20, batch_size=8, warmup_steps=2, chunk_steps=10,
                    eval_batch_size=8),
    "cpu": Config(),
    # The authors' scale (reference/icll.md §1.2–1.5): full prompts (max_len 0: nothing cut), N = 1k … 40k, 500
    # test DFAs; 8 × 128 transformers with 2 heads (their best at N ≥ 2.5k), batch 32, 200 epochs of the largest N
    # (250k steps), lr 2.5e-4, weight decay 0.1. One width for every model keeps the grid simple; their LSTMs and
    # Mambas were 256 / 512 wide (set d_lstm / d_ssm).
    "paper": Config(max_len=0, n_grid=(1000, 2500, 5000, 10000, 20000, 40000), n_test=500, eval_prompts=500,
                    head_prompts=128, models=tuple(ARCHS), n_layers=8, d_attn=128, n_heads=2, d_lstm=256,
                    d_ssm=256, ssm_state=16, ngram_orders=(1, 2, 3), seeds=3, steps=250_000, batch_size=32, lr=2.5e-4, warmup_steps=25_000,
                    chunk_steps=5000, eval_batch_size=256),
}
