"""Configuration of the language-modelling study: the byte corpus, the model family matched in parameters, training.

Models are named by their learned layers, optionally followed by "+ngram" (models_of, layers_of):
    "softmax"  every learned layer softmax attention        "linear"  every learned layer linear attention
    "mesa"     every learned layer a mesa layer             "hybrid"  the first half softmax, the rest mesa (the
                                                                      mesa paper's hybrid, reference/mesa.md §2.10–2.12)
    "<base>+ngram"  the base's learned layers with hard-wired n-gram layers of orders `ngram_orders` inserted after
               the first one, as Akyürek et al.'s hybrid places them (layer 0 learned, layers 1–3 "ngram" k = 1, 2, 3,
               the rest learned; reference/icll.md §1.7). Every layer, learned or not, has the same MLP and pre-LN.
Parameters are matched: the attention bases have the same count (mesa adds one λ per head); an "+ngram" model has
more layers, so its width is the multiple of n_heads whose parameter count is nearest the base's (matched_width).
"""

from __future__ import annotations

from pathlib import Path

import functools

import equinox as eqx
import jax

from mesalab.config import (
    FRACTION, NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, Rule, config, integer, one_of, override, require, tuple_of,
)
from mesalab.models.config import MESA_METHODS, TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.tasks.corpus import CorpusConfig
from mesalab.train import TrainConfig
from mesalab.train.config import adam_warmup_cosine

BASES = ("softmax", "linear", "mesa", "hybrid")
NGRAM = "+ngram"
MODELS_ALLOWED = "names from " + ", ".join(BASES) + f", each optionally followed by {NGRAM!r}"


def is_model_name(name: object) -> bool:
    return isinstance(name, str) and name.removesuffix(NGRAM) in BASES


@config
class Config:
    """Corpus (tasks/corpus.py): source ("stdlib": the Python standard library's own source; a path; "hf:NAME"),
    valid_share of documents held out by path hash, seq_len bytes per window, max_bytes of the training split kept
    (0: all; the validation split is always whole). Models: `models` (names as in the module docstring), n_layers
    learned layers of width d_model with n_heads heads (d_head = d_model / n_heads), MLP 4·d_model, pre-LayerNorm,
    learned positions; ngram_orders: the n-gram layers' orders k; mesa_method: how mesa layers solve (the fastest at
    these shapes, measured: see the package docstring); mesa_ridge: λ at initialisation. Training: Adam with warm-up
    and cosine decay to lr/10 (train.config.adam_warmup_cosine), global-norm clip 1, batch_size windows per step for
    `steps` steps, the same for every model (equal token budgets); seeds members per model, seed s drawing the same
    batches in every model. Measures: val_windows fixed validation windows scored every chunk_steps (the curves);
    eval_windows fixed validation windows scored at the end (loss, perplexity, ICL score)."""

    source: str = "stdlib"
    valid_share: float = 0.05
    seq_len: int = 128
    max_bytes: int = 4_000_000
    # The cpu recipe (chosen from measured throughput before any finding was judged; the package docstring says how)
    models: tuple[str, ...] = BASES + tuple(b + NGRAM for b in BASES)
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    ngram_orders: tuple[int, ...] = (1, 2, 3)
    mesa_method: str = "scan"
    mesa_ridge: float = 1.0
    seeds: int = 3
    steps: int = 200
    batch_size: int = 64
    lr: float = 3e-3
    chunk_steps: int = 40
    val_windows: int = 32
    eval_windows: int = 512

    RULES = {
        **dict.fromkeys(("seq_len", "d_model", "n_heads", "seeds", "steps", "batch_size", "chunk_steps",
                         "val_windows", "eval_windows"), POSITIVE_INT),
        "n_layers": integer(1),
        "max_bytes": NONNEGATIVE_INT,
        "valid_share": FRACTION,
        **dict.fromkeys(("lr", "mesa_ridge"), POSITIVE),
        "ngram_orders": tuple_of(integer(1), "n-gram orders >= 1", nonempty=True),
        "models": tuple_of(Rule(is_model_name, "a model name"), MODELS_ALLOWED, nonempty=True),
        "mesa_method": one_of(*MESA_METHODS),
        "source": Rule(lambda v: isinstance(v, str) and (v == "stdlib" or v.startswith("hf:") and len(v) > 3
                                                          or Path(v).expanduser().exists()),
                       "'stdlib', an existing file or folder, or 'hf:NAME'"),
    }

    def __post_init__(self) -> None:
        require(self, "models", "softmax" in self.models and len(set(self.models)) == len(self.models),
                "distinct names that include 'softmax' (every finding compares with it)")
        require(self, "d_model", self.d_model % self.n_heads == 0, f"a multiple of n_heads ({self.n_heads})")
        require(self, "n_layers", self.n_layers >= 2 or "hybrid" not in {m.removesuffix(NGRAM) for m in self.models},
                "at least 2 when 'hybrid' is trained (softmax first, mesa after)")
        require(self, "valid_share", 0 < self.valid_share < 1, "a number in (0, 1)")
        require(self, "seq_len", self.seq_len >= 8, "an integer >= 8 (the ICL score needs an early and a late token)")
        task_of(self)


def task_of(cfg: Config, split: str = "train") -> CorpusConfig:
    """The corpus windows of one split (the validation split is never truncated)."""
    return CorpusConfig(source=cfg.source, split=split, valid_share=cfg.valid_share, seq_len=cfg.seq_len,
                        max_bytes=cfg.max_bytes if split == "train" else 0)


def layers_of(cfg: Config, name: str) -> tuple[str, ...]:
    """The layer kinds of model `name`, first layer first."""
    base = name.removesuffix(NGRAM)
    n = cfg.n_layers
    learned = {"softmax": ["softmax"] * n, "linear": ["linear"] * n, "mesa": ["mesa"] * n,
               "hybrid": ["softmax"] * (n // 2) + ["mesa"] * (n - n // 2)}[base]
    if name.endswith(NGRAM):
        learned = learned[:1] + [f"ngram{k}" for k in cfg.ngram_orders] + learned[1:]
    return tuple(learned)


def _model_config(cfg: Config, layers: tuple[str, ...], width: int) -> TransformerConfig:
    return TransformerConfig(d_in=256, d_out=256, d_model=width, n_layers=len(layers), n_heads=cfg.n_heads,
                             d_head=width // cfg.n_heads, attention=layers, causal=True, d_mlp=4 * width,
                             layer_norm=True, pos_embedding="learned", max_len=cfg.seq_len,
                             mesa_method=cfg.mesa_method, mesa_ridge=cfg.mesa_ridge)


@functools.lru_cache(maxsize=256)
def param_count(model_cfg: TransformerConfig) -> int:
    """Trainable parameters of a model (from shapes; nothing runs)."""
    shapes = eqx.filter_eval_shape(Transformer, model_cfg, key=jax.random.PRNGKey(0))
    return sum(a.size for a in jax.tree_util.tree_leaves(eqx.filter(shapes, lambda x: hasattr(x, "shape"))))


def matched_width(cfg: Config, layers: tuple[str, ...]) -> int:
    """The width (a multiple of n_heads, at most d_model) whose parameter count is nearest the base models' at
    d_model: an "+ngram" model trades width for its extra layers."""
    target = param_count(_model_config(cfg, ("softmax",) * cfg.n_layers, cfg.d_model))
    widths = range(cfg.n_heads, cfg.d_model + 1, cfg.n_heads)
    return min(widths, key=lambda w: (abs(param_count(_model_config(cfg, layers, w)) - target), -w))


def model_of(cfg: Config, name: str) -> TransformerConfig:
    layers = layers_of(cfg, name)
    width = matched_width(cfg, layers) if name.endswith(NGRAM) else cfg.d_model
    return _model_config(cfg, layers, width)


def training(cfg: Config) -> TrainConfig:
    # eval_batch_size: the engine's own test_loss is on training-split windows; the study's validation loss comes
    # from its metrics_fn (measures.py), so a small batch keeps that in-program evaluation cheap.
    # ensemble_group: every seed in one vmapped group; the mesa scan's 2·T sequential steps are cheaper the more
    # sequences each step carries (measured: the automatic grouping would train the seeds one after another).
    recipe = adam_warmup_cosine(cfg.steps, cfg.batch_size, cfg.lr, chunk_steps=cfg.chunk_steps, eval_batch_size=8,
                                clip_norm=1.0)
    return override(recipe, ensemble_group=cfg.seeds)


PRESETS = {
    # Two models (one compiled program each, twice: trained and null) that between them run every layer kind.
    "smoke": Config(seq_len=32, max_bytes=200_000, models=("softmax", "hybrid+ngram"), d_model=16, n_heads=1,
                    ngram_orders=(1,), seeds=2, steps=12, batch_size=8, chunk_steps=6, val_windows=16,
                    eval_windows=64),
    "cpu": Config(),
    # Sizes a GPU would use: Olsson et al.'s 512-token contexts (so the ICL score reads tokens 50 and 500 exactly),
    # 6 learned layers of width 512, every base with and without n-gram layers, 3 seeds; 20k steps × 64 windows
    # (655M bytes, about 22 passes over the 30 MB standard library: pass a larger source, e.g. hf:roneneldan/TinyStories).
    "paper": Config(seq_len=512, max_bytes=0, n_layers=6, d_model=512,
                    n_heads=8, seeds=3, steps=20_000, batch_size=64, lr=1e-3, chunk_steps=500, val_windows=256,
                    eval_windows=4096),
}
