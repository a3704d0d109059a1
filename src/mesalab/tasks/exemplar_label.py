"""Two-pair few-shot relabelling (Singh et al. 2024, "What needs to go right for an induction head?";
reference/induction.md §3.2): exemplar, label, exemplar, label, query — 5 tokens.

A sequence draws a query class q and a distractor class d ≠ q (uniform over the K classes of its split) and shows
them in random order, each as one exemplar followed by its label; the query is a third exemplar of class q and the
target is q's label. Labels are reassigned per sequence: an unordered pair {a, b} of the L labels is drawn from
the split's pairs and ordered at random, q gets the first and d the second. The L(L−1)/2 pairs are split once
(from `instance_seed`) into training and validation pairs, val_pair_share of them held out (8 / 2 for L = 5,
36 / 9 for L = 10, 84 / 21 for L = 15, as the authors' `fs_relabel_split`), so no fixed class→label map can
solve the task: the model must read the label next to the matching exemplar (chance: loss ln 2 when it picks one
of the two context labels at random).

Exemplars. The authors embed Omniglot images with a ResNet18 (1,623 classes × 5 exemplars × 512 features); those
features cannot be downloaded here. Instead, as the S4 generator (`tasks.classification`, whose class prototypes
this reuses), class k has a prototype μ_k ~ N(0, I/D) and a *fixed* set of E noisy exemplars
x_{k,e} = (μ_k + ε·η_{k,e})/√(1 + ε²), η_{k,e} ~ N(0, I/D) drawn once per instance. So within-class similarity is
set by ε alone (cos ≈ 1/(1 + ε²)) and classes are nearly orthogonal, where ResNet features of different Omniglot
characters are correlated and their exemplars vary in structured ways; D defaults to 64, not 512. As the authors
(`exemplar_split 1 4 0`), n_train_exemplars = 1 of the E = 5 exemplars are used for training (so a training query
is the very token of its matching context exemplar) and the others are held out. Classes: K training classes and
n_test_classes held-out ones (the authors: 50 and 100).

Tokens [exemplar features (D) | 1 on exemplar tokens | one-hot label (L)]: a linear embedding of this token is a
linear embedding with a bias for exemplars plus a learned embedding table for labels, the authors' model
(`SequenceClassifier`: `example_embed` with bias, `label_embed` without). Positions come from the model (RoPE).

Example (D = 2, L = 5, K = 6; training split, so every exemplar is exemplar 0 of its class): the distractor is
class 0, labelled 2 in this sequence, the query class 4, labelled 4; the query repeats class 4's exemplar::

    exemplar   1?  one-hot label
    [-0.36 -0.28 | 1 | 0 0 0 0 0]   exemplar of class 0
    [ 0     0    | 0 | 0 0 1 0 0]   label 2
    [ 0.05  0.70 | 1 | 0 0 0 0 0]   exemplar of class 4
    [ 0     0    | 0 | 0 0 0 0 1]   label 4
    [ 0.05  0.70 | 1 | 0 0 0 0 0]   query (class 4)     target: label 4 (one-hot over L = 5), loss here only

Evaluators (`eval_sets`, after the authors' fsl_train / fsl_val_rl / fsl_train_valex / fsl_test_class): training
sequences, held-out relabelings (validation label pairs), held-out exemplars, held-out classes.

classes_used and eps are dynamic (ensemble members may differ in them): a member draws its training classes from the
first classes_used of the n_classes (0: all), so a class-count sweep (the authors' 50 / 100 / 200) can train as one
ensemble with n_classes = 200. n_labels sets the token and output widths, so it is static.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.config import concrete, config, override, require, require_choice
from mesalab.tasks.base import Batch, sampler, uniform_block
from mesalab.tasks.classification import _index, _instance


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@config(dynamic=("classes_used", "eps"))
class ExemplarLabelConfig:
    """n_classes K training classes; classes_used the first K' ≤ K of them that sequences draw from (0: all K;
    dynamic, a member knob); n_labels L; dim D; eps ε the exemplar noise around its class prototype (dynamic);
    n_exemplars E per class, the first n_train_exemplars for training and the rest held out; n_test_classes
    held-out classes; val_pair_share the share of unordered label pairs held out (rounded, at least one each way);
    classes / exemplars / label_pairs: which split a sequence draws from ("train", or "test" / "val" / "val");
    instance_seed fixes prototypes, exemplars and the label-pair split."""

    n_classes: int = 50
    n_labels: int = 5
    dim: int = 64
    eps: float = 0.5
    n_exemplars: int = 5
    n_train_exemplars: int = 1
    n_test_classes: int = 100
    val_pair_share: float = 0.2
    classes_used: float = 0.0
    classes: str = "train"
    exemplars: str = "train"
    label_pairs: str = "train"
    instance_seed: int = 0

    def __post_init__(self) -> None:
        require(self, "n_classes", _is_int(self.n_classes) and self.n_classes >= 2, "an integer >= 2")
        require(self, "n_labels", _is_int(self.n_labels) and self.n_labels >= 3,
                "an integer >= 3 (two labels per sequence, and pairs held out)")
        for f in ("dim", "n_exemplars", "n_test_classes"):
            require(self, f, _is_int(getattr(self, f)) and getattr(self, f) >= 1 + (f != "dim"),
                    "a positive integer" if f == "dim" else "an integer >= 2")
        require(self, "n_train_exemplars", _is_int(self.n_train_exemplars)
                and 1 <= self.n_train_exemplars < self.n_exemplars,
                f"an integer in [1, n_exemplars) = [1, {self.n_exemplars}) (some exemplars are held out)")
        require(self, "val_pair_share", isinstance(self.val_pair_share, (int, float)) and 0 < self.val_pair_share < 1,
                "a number in (0, 1)")
        if concrete(self.classes_used):
            v = self.classes_used
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()
            require(self, "classes_used", ok and (v == 0 or 2 <= v <= self.n_classes),
                    f"0 (all) or a whole number in [2, n_classes = {self.n_classes}]")
        if concrete(self.eps):
            require(self, "eps", isinstance(self.eps, (int, float)) and self.eps >= 0, "a number >= 0")
        require_choice(self, "classes", ("train", "test"))
        require_choice(self, "exemplars", ("train", "val"))
        require_choice(self, "label_pairs", ("train", "val"))
        require(self, "instance_seed", _is_int(self.instance_seed) and self.instance_seed >= 0,
                "a non-negative integer")

    @property
    def n_val_pairs(self) -> int:
        pairs = self.n_labels * (self.n_labels - 1) // 2
        return min(max(1, round(self.val_pair_share * pairs)), pairs - 1)

    @property
    def exemplar_slice(self) -> tuple[int, int]:
        """(start, stop) of the exemplar features in a token."""
        return (0, self.dim)

    @property
    def label_slice(self) -> tuple[int, int]:
        """(start, stop) of the one-hot label in a token."""
        return (self.dim + 1, self.dim + 1 + self.n_labels)

    @property
    def token_width(self) -> int:
        return self.dim + 1 + self.n_labels

    @property
    def target_width(self) -> int:
        return self.n_labels

    @property
    def seq_len(self) -> int:
        return 5

    @property
    def loss_positions(self) -> str:
        return "last"

    @property
    def loss_kind(self) -> str:
        return "cross_entropy"

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


class Instance(NamedTuple):
    """The fixed world of a config (host numpy arrays, read-only)."""

    prototypes: np.ndarray  # [n_classes + n_test_classes, D]; the test classes are the last rows
    noise: np.ndarray  # [n_classes + n_test_classes, E, D]  η_{k,e} ~ N(0, I/D)
    train_pairs: np.ndarray  # [P − n_val, 2] unordered label pairs (a < b)
    val_pairs: np.ndarray  # [n_val, 2]


@functools.lru_cache(maxsize=16)
def _exemplar_instance(seed: int, n_rows: int, n_exemplars: int, n_labels: int, n_val: int, d: int) -> Instance:
    prototypes = _instance(seed, n_rows, n_labels, d).class_means  # the S4 prototypes (reference/induction.md §1.2)
    rng = np.random.default_rng([seed, 1])
    noise = (rng.standard_normal((n_rows, n_exemplars, d)) / np.sqrt(d)).astype(np.float32)
    pairs = np.asarray(list(itertools.combinations(range(n_labels), 2)), np.int32)
    pairs = pairs[rng.permutation(len(pairs))]
    out = Instance(prototypes, noise, pairs[n_val:], pairs[:n_val])
    for a in out:
        a.setflags(write=False)
    return out


def instance(cfg: ExemplarLabelConfig) -> Instance:
    return _exemplar_instance(cfg.instance_seed, cfg.n_classes + cfg.n_test_classes, cfg.n_exemplars,
                              cfg.n_labels, cfg.n_val_pairs, cfg.dim)


def exemplar_table(cfg: ExemplarLabelConfig) -> jax.Array:
    """All exemplars [n_classes + n_test_classes, E, D], x_{k,e} = (μ_k + ε·η_{k,e})/√(1 + ε²)."""
    inst = instance(cfg)
    eps = jnp.asarray(cfg.eps, jnp.float32)
    return (jnp.asarray(inst.prototypes)[:, None] + eps * jnp.asarray(inst.noise)) / jnp.sqrt(1.0 + eps**2)


@sampler
def sample(cfg: ExemplarLabelConfig, key: jax.Array, batch_size: int) -> Batch:
    """Draw a batch (see the module docstring).

    info: "label" the target [B]; "query_class", "distractor_class" [B] (held-out classes are numbered from
    n_classes on); "context_classes", "context_labels" [B, 2] in sequence order; "match_position" [B] the
    position (1 or 3) of the label whose exemplar is of the query's class; "exemplar_ids" [B, 3] (the two context
    exemplars and the query's).
    """
    inst, s, d, nl = instance(cfg), batch_size, cfg.dim, cfg.n_labels
    u = uniform_block(key, query=(s,), distractor=(s,), order=(s,), pair=(s,), swap=(s,), exemplar=(s, 3))
    if cfg.classes == "train":
        used = jnp.asarray(cfg.classes_used, jnp.float32)
        base, k = 0, jnp.where(used > 0, used, cfg.n_classes).astype(jnp.int32)
    else:
        base, k = cfg.n_classes, cfg.n_test_classes
    q = _index(u["query"], k)
    dist = (q + 1 + _index(u["distractor"], k - 1)) % k
    q, dist = q + base, dist + base

    pairs = jnp.asarray(inst.train_pairs if cfg.label_pairs == "train" else inst.val_pairs)
    pair = pairs[_index(u["pair"], pairs.shape[0])]  # [s, 2]
    swap = u["swap"] < 0.5
    label_q = jnp.where(swap, pair[:, 1], pair[:, 0])
    label_d = jnp.where(swap, pair[:, 0], pair[:, 1])

    query_first = u["order"] < 0.5
    ctx_classes = jnp.where(query_first[:, None], jnp.stack([q, dist], 1), jnp.stack([dist, q], 1))
    ctx_labels = jnp.where(query_first[:, None], jnp.stack([label_q, label_d], 1), jnp.stack([label_d, label_q], 1))

    lo, n_ex = (0, cfg.n_train_exemplars) if cfg.exemplars == "train" else (
        cfg.n_train_exemplars, cfg.n_exemplars - cfg.n_train_exemplars)
    ex_ids = lo + _index(u["exemplar"], n_ex)  # [s, 3]
    classes = jnp.concatenate([ctx_classes, q[:, None]], axis=1)  # [s, 3]
    feats = exemplar_table(cfg)[classes, ex_ids]  # [s, 3, D]

    ones = jnp.ones((s, 3, 1), feats.dtype)
    ex_tokens = jnp.concatenate([feats, ones, jnp.zeros((s, 3, nl), feats.dtype)], axis=-1)
    lab_tokens = jnp.concatenate([jnp.zeros((s, 2, d + 1), feats.dtype),
                                  jax.nn.one_hot(ctx_labels, nl, dtype=feats.dtype)], axis=-1)
    inputs = jnp.stack([ex_tokens[:, 0], lab_tokens[:, 0], ex_tokens[:, 1], lab_tokens[:, 1], ex_tokens[:, 2]], axis=1)
    targets = jnp.zeros((s, 5, nl), feats.dtype).at[:, -1].set(jax.nn.one_hot(label_q, nl, dtype=feats.dtype))
    mask = jnp.zeros((s, 5), feats.dtype).at[:, -1].set(1.0)
    info = {
        "label": label_q.astype(jnp.int32), "query_class": q.astype(jnp.int32),
        "distractor_class": dist.astype(jnp.int32),
        "context_classes": ctx_classes.astype(jnp.int32), "context_labels": ctx_labels.astype(jnp.int32),
        "match_position": jnp.where(query_first, 1, 3).astype(jnp.int32),
        "exemplar_ids": ex_ids.astype(jnp.int32),
    }
    return Batch(inputs, targets, mask, info)


def eval_sets(cfg: ExemplarLabelConfig) -> dict[str, ExemplarLabelConfig]:
    """The authors' four evaluators, sharing cfg's instance: training sequences, held-out relabelings (validation
    label pairs), held-out exemplars, held-out classes (with training exemplars and pairs, as the authors)."""
    train = override(cfg, classes="train", exemplars="train", label_pairs="train")
    return {
        "train": train,
        "heldout_relabel": override(train, label_pairs="val"),
        "heldout_exemplars": override(train, exemplars="val"),
        "heldout_classes": override(train, classes="test"),
    }
