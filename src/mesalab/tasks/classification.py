"""Bursty in-context classification (Reddy 2024; reference/induction.md §1.2), after the author's `datasets_v2.py`.

An instance fixes K class means μ_k ~ N(0, I/D), L label vectors ℓ_j ~ N(0, I/D) (dense, in the same D-dim content
space) and the map class k → label k mod L, all drawn on the host from `instance_seed`. An item of class k is
x = (μ_k + ε·η)/√(1 + ε²), η ~ N(0, I/D) fresh for every occurrence; label tokens carry no noise. A sequence is
x₁, ℓ(x₁), …, x_N, ℓ(x_N), x_q (2N + 1 tokens); the target is the label of x_q, an L-way classification read at the
last token only. Each token is [one-hot position (width 2·Nmax + 1) | content (D)]; the 2N + 1 position one-hots
start at a random offset in {0, …, 2Nmax − 2N}, drawn per sequence.

Sequence kinds (per sequence):
  bursty (prob. p_B):  N/B distinct classes, each B times, shuffled; the query class is one of them (uniformly).
  non-bursty:          N context classes and the query class drawn i.i.d. from Zipf P(k) ∝ k^(−α), k = 1…K
                       (class index k − 1), so the query is usually absent from the context.
  novel (prob. p_C):   bursty over K_c fresh class means (new every call, shared by the batch), labels k mod L;
                       only in-context learning can solve them. As in the reference, novel sequences are always
                       bursty (with B = 0 they use bursts of N/2, or N's largest proper divisor when N is odd) and
                       take no label shift.
B = 0 means non-bursty (the reference's convention: p_B is then ignored).

no_repeats (the reference hard-codes True): the N/B classes of a bursty sequence carry distinct labels. Which
classes a bursty sequence uses is set by `bursty_classes`:
  "uniform" (the reference): labels without replacement uniformly, then a class of each label uniformly — P is
            ignored, so α only shapes non-bursty sequences;
  "zipf":   labels without replacement in proportion to their Zipf mass Σ_{k ↦ label} P(k), then a class of each
            label ∝ P (with no_repeats=False: classes i.i.d. from P, the reference's other branch).

Example (K = 8, L = 4, N = 2, B = 1, Nmax = 3, D = 2, offset 1): a bursty sequence of N/B = 2 classes, 5 (label
5 mod 4 = 1) and 2 (label 2), each once; the query is of class 5. Token width 2·3 + 1 + 2 = 9::

    position one-hot       content
    [0 1 0 0 0 0 0 |  0.41 -0.12]   x₁ = item of class 5
    [0 0 1 0 0 0 0 |  0.07  0.55]   ℓ₁ = label vector 1
    [0 0 0 1 0 0 0 | -0.30  0.22]   x₂ = item of class 2
    [0 0 0 0 1 0 0 | -0.61 -0.04]   ℓ₂ = label vector 2
    [0 0 0 0 0 1 0 |  0.38 -0.09]   x_q = a fresh item of class 5   target one-hot(1) over L = 4, loss here only

Test sets (`eval_sets`): IC (novel classes, p_B = p_C = 1), IC2 (seen classes, every context label shifted by one:
(label + 1) mod L; the target is the shifted label, so accuracy scores the in-context map — note the reference
prints the IC2 *loss* against the original label), IW (B = 0, p_B = p_C = 0). They share the training instance.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.config import concrete, config, override, require, require_choice
from mesalab.tasks.base import Batch, sampler, uniform_block


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _largest_proper_divisor(n: int) -> int:
    return max((d for d in range(1, n) if n % d == 0), default=0)


@config(dynamic=("eps", "p_bursty", "p_novel", "zipf_alpha"))
class ClassificationConfig:
    """n_classes K; n_labels L; n_pairs N item-label pairs before the query; dim D content dimensions; eps ε the
    within-class noise; burstiness B (0 = non-bursty); p_bursty p_B; p_novel p_C the share of novel-class sequences;
    zipf_alpha α; max_pairs Nmax sets the position code (2·Nmax + 1 one-hots); label_shift adds to every seen-class
    label mod L (1 gives the IC2 test); instance_seed fixes means, label vectors and the class→label map;
    bursty_classes "uniform" | "zipf" (see the module docstring); no_repeats: distinct labels in bursty sequences;
    n_novel_classes K_c. eps, p_bursty, p_novel and zipf_alpha are dynamic: ensemble members may differ in them."""

    n_classes: int = 512
    n_labels: int = 32
    n_pairs: int = 8
    dim: int = 63
    eps: float = 0.1
    burstiness: int = 4
    p_bursty: float = 1.0
    p_novel: float = 0.0
    zipf_alpha: float = 0.0
    max_pairs: int = 32
    label_shift: int = 0
    instance_seed: int = 0
    bursty_classes: str = "uniform"
    no_repeats: bool = True
    n_novel_classes: int = 128

    def __post_init__(self) -> None:
        for f in ("n_labels", "dim", "n_novel_classes"):
            require(self, f, _is_int(getattr(self, f)) and getattr(self, f) >= 1, "a positive integer")
        n, b, k, nl = self.n_pairs, self.burstiness, self.n_classes, self.n_labels
        require(self, "n_pairs", _is_int(n) and n >= 2, "an integer >= 2")
        require(self, "n_classes", _is_int(k) and k >= nl, f"an integer >= n_labels ({nl})")
        require(self, "n_classes", k % nl == 0, f"a multiple of n_labels ({nl}): class k has label k mod L")
        require(self, "n_novel_classes", self.n_novel_classes >= nl and self.n_novel_classes % nl == 0,
                f"a multiple of n_labels ({nl}), at least n_labels")
        require(self, "burstiness", _is_int(b) and 0 <= b < n,
                f"an integer in [0, n_pairs) = [0, {n}) (0 = non-bursty)")
        require(self, "burstiness", b == 0 or n % b == 0, f"0 or a divisor of n_pairs ({n})")
        require(self, "max_pairs", _is_int(self.max_pairs) and self.max_pairs >= n, f"an integer >= n_pairs ({n})")
        require(self, "label_shift", _is_int(self.label_shift) and 0 <= self.label_shift < nl,
                f"an integer in [0, n_labels) = [0, {nl})")
        require(self, "instance_seed", _is_int(self.instance_seed) and self.instance_seed >= 0,
                "a non-negative integer")
        require_choice(self, "bursty_classes", ("uniform", "zipf"))
        require(self, "no_repeats", isinstance(self.no_repeats, bool), "True or False")
        if self.no_repeats:
            groups = n // self.novel_burstiness
            require(self, "burstiness", groups <= nl,
                    f"a value giving n_pairs / burstiness <= n_labels ({nl}) distinct labels per bursty sequence "
                    f"(here {groups}), or set no_repeats=False")
        for f, lo, hi in (("eps", 0.0, None), ("zipf_alpha", 0.0, None), ("p_bursty", 0.0, 1.0),
                          ("p_novel", 0.0, 1.0)):
            v = getattr(self, f)
            if concrete(v):
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)
                require(self, f, ok, f"a number in [{lo}, {hi}]" if hi is not None else f"a number >= {lo}")

    @property
    def novel_burstiness(self) -> int:
        """The burst size of bursty and novel-class sequences: B, or for B = 0 the reference's N/2 (N's largest
        proper divisor when N is odd)."""
        return self.burstiness if self.burstiness > 0 else _largest_proper_divisor(self.n_pairs)

    @property
    def position_width(self) -> int:
        return 2 * self.max_pairs + 1

    @property
    def token_width(self) -> int:
        return self.position_width + self.dim

    @property
    def target_width(self) -> int:
        return self.n_labels

    @property
    def seq_len(self) -> int:
        return 2 * self.n_pairs + 1

    @property
    def loss_positions(self) -> str:
        return "last"

    @property
    def loss_kind(self) -> str:
        return "cross_entropy"

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


class Instance(NamedTuple):
    """The fixed world a config trains and tests in (host numpy arrays, read-only)."""

    class_means: np.ndarray  # [K, D]  μ_k ~ N(0, I/D)
    label_vectors: np.ndarray  # [L, D]  ℓ_j ~ N(0, I/D)
    class_labels: np.ndarray  # [K]     k mod L


@functools.lru_cache(maxsize=16)
def _instance(seed: int, k: int, n_labels: int, d: int) -> Instance:
    rng = np.random.default_rng(seed)
    # Labels first, then classes (the reference's order): the same seed, L and D give the same label vectors for
    # every K, and the class means of a smaller K are the first rows of a larger one's.
    labels = (rng.standard_normal((n_labels, d)) / np.sqrt(d)).astype(np.float32)
    means = (rng.standard_normal((k, d)) / np.sqrt(d)).astype(np.float32)
    class_labels = (np.arange(k) % n_labels).astype(np.int32)
    for a in (labels, means, class_labels):
        a.setflags(write=False)
    return Instance(means, labels, class_labels)


def instance(cfg: ClassificationConfig) -> Instance:
    """The class means, label vectors and class→label map of `cfg`, drawn once per (instance_seed, K, L, D)."""
    return _instance(cfg.instance_seed, cfg.n_classes, cfg.n_labels, cfg.dim)


def zipf_logits(alpha, n: int) -> jax.Array:
    """log P(k) + const for P(k) ∝ k^(−α), k = 1…n (α may be traced: a per-member ensemble value)."""
    return -alpha * jnp.log(jnp.arange(1, n + 1, dtype=jnp.float32))


def _index(u: jax.Array, n: int) -> jax.Array:
    """Uniform integers in [0, n) from uniforms u."""
    return jnp.minimum((u * n).astype(jnp.int32), n - 1)


def _gumbel(u: jax.Array) -> jax.Array:
    return -jnp.log(-jnp.log(jnp.maximum(u, jnp.finfo(u.dtype).tiny)))


def _draw_cdf(u: jax.Array, cdf: jax.Array) -> jax.Array:
    """Inverse-CDF draws (one per uniform in u) from a categorical with cumulative probabilities cdf [n]; where
    `jax.random.categorical` would spend n Gumbels per draw."""
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1).astype(jnp.int32)


def _burst_classes(u_label: jax.Array, u_pos: jax.Array, k: int, n_labels: int, alpha, no_repeats: bool):
    """[batch, groups] classes of bursty sequences from uniforms u_label [batch, L] and u_pos [batch, groups]
    (class = pos·L + label under no_repeats, with distinct labels); alpha None draws classes uniformly."""
    if not no_repeats:
        if alpha is None:
            return _index(u_pos, k)
        return _draw_cdf(u_pos, jnp.cumsum(jax.nn.softmax(zipf_logits(alpha, k))))
    groups, per_label = u_pos.shape[1], k // n_labels
    if alpha is None:  # a uniform subset of labels (top-k of uniforms), then a uniform class of each label
        return (_index(u_pos, per_label) * n_labels + jax.lax.top_k(u_label, groups)[1]).astype(jnp.int32)
    table = zipf_logits(alpha, k).reshape(per_label, n_labels).T  # [L, K/L]: table[l, pos] = log P(pos·L + l)
    # Gumbel top-k: labels drawn without replacement, each ∝ its Zipf mass.
    _, labels = jax.lax.top_k(jax.nn.logsumexp(table, axis=1) + _gumbel(u_label), groups)
    cdf = jnp.cumsum(jax.nn.softmax(table, axis=1), axis=1)[labels]  # [batch, groups, K/L]
    pos = jnp.minimum(jnp.sum(u_pos[..., None] >= cdf, axis=-1), per_label - 1)
    return (pos * n_labels + labels).astype(jnp.int32)


@sampler
def sample(cfg: ClassificationConfig, key: jax.Array, batch_size: int) -> Batch:
    """Draw a batch of classification sequences (see the module docstring).

    info: "label" the target label (after any shift) [B]; "query_class" [B] and "context_classes" [B, N] (novel
    classes are numbered K … K + K_c − 1, fresh each call); "context_labels" [B, N] as shown in the context;
    "bursty" [B] (the context was built from bursts: bursty or novel); "novel" [B]; "offset" [B] the first
    position one-hot; "query_in_context" [B].
    """
    inst = instance(cfg)
    s, n, nl, k, d = batch_size, cfg.n_pairs, cfg.n_labels, cfg.n_classes, cfg.dim
    burst, t = cfg.novel_burstiness, 2 * n + 1
    groups = n // burst
    novel_possible = not (concrete(cfg.p_novel) and cfg.p_novel == 0)
    kc = cfg.n_novel_classes if novel_possible else 0
    ku, kn = jax.random.split(key)
    u = uniform_block(ku, kind=(2, s), label=(s, nl), pos=(s, groups), new_label=(s, nl if kc else 0),
                      new_pos=(s, groups if kc else 0), shuffle=(s, n), pick=(s, 1), iid=(s, n + 1), offset=(s,))
    normals = jax.random.normal(kn, (s * (n + 1) * d + kc * d,)) / float(np.sqrt(d))
    noise, new_means = normals[: s * (n + 1) * d].reshape(s, n + 1, d), normals[s * (n + 1) * d:].reshape(kc, d)

    bursty = (u["kind"][0] < cfg.p_bursty) & (cfg.burstiness > 0)
    novel = u["kind"][1] < cfg.p_novel if kc else jnp.zeros((s,), bool)

    # Bursty context: one set of burst classes per sequence (seen or novel), tiled B times, shuffled.
    alpha_b = cfg.zipf_alpha if cfg.bursty_classes == "zipf" else None
    choices = jnp.zeros((s, groups), jnp.int32)
    if cfg.burstiness > 0:
        choices = _burst_classes(u["label"], u["pos"], k, nl, alpha_b, cfg.no_repeats)
    means, class_labels = jnp.asarray(inst.class_means), jnp.asarray(inst.class_labels)
    if kc:
        new_choices = _burst_classes(u["new_label"], u["new_pos"], kc, nl, None, cfg.no_repeats)
        choices = jnp.where(novel[:, None], k + new_choices, choices)  # novel classes are numbered K … K + K_c − 1
        means = jnp.concatenate([means, new_means])
        class_labels = jnp.concatenate([class_labels, jnp.arange(kc, dtype=jnp.int32) % nl])
    perm = jnp.argsort(u["shuffle"], axis=1)
    burst_ctx = jnp.take_along_axis(jnp.tile(choices, (1, burst)), perm, axis=1)
    burst_q = jnp.take_along_axis(choices, _index(u["pick"], groups), axis=1)[:, 0]

    # Non-bursty (seen classes only): context and query i.i.d. from Zipf P.
    if concrete(cfg.zipf_alpha) and cfg.zipf_alpha == 0:
        iid = _index(u["iid"], k)  # the same law; skips compiling the search (≈ 0.5 s)
    else:
        iid = _draw_cdf(u["iid"], jnp.cumsum(jax.nn.softmax(zipf_logits(cfg.zipf_alpha, k))))
    structured = bursty | novel
    ctx = jnp.where(structured[:, None], burst_ctx, iid[:, :n])
    query = jnp.where(structured, burst_q, iid[:, n])
    classes = jnp.concatenate([ctx, query[:, None]], axis=1)  # [s, N + 1]

    eps = jnp.asarray(cfg.eps, jnp.float32)
    items = (means[classes] + eps * noise) / jnp.sqrt(1.0 + eps**2)
    shift = jnp.where(novel, 0, cfg.label_shift)[:, None]
    labels = (class_labels[classes] + shift) % nl  # [s, N + 1]; the last is the target
    label_vecs = jnp.asarray(inst.label_vectors)[labels[:, :n]]
    content = jnp.concatenate([jnp.stack([items[:, :n], label_vecs], axis=2).reshape(s, 2 * n, d),
                               items[:, n:]], axis=1)

    offset = _index(u["offset"], cfg.position_width - t + 1)
    pos = jax.nn.one_hot(offset[:, None] + jnp.arange(t), cfg.position_width, dtype=content.dtype)
    inputs = jnp.concatenate([pos, content], axis=-1)
    target = labels[:, n]
    targets = jnp.zeros((s, t, nl), inputs.dtype).at[:, -1].set(jax.nn.one_hot(target, nl, dtype=inputs.dtype))
    mask = jnp.zeros((s, t), inputs.dtype).at[:, -1].set(1.0)
    info = {
        "label": target.astype(jnp.int32), "query_class": query, "context_classes": ctx,
        "context_labels": labels[:, :n].astype(jnp.int32), "bursty": structured, "novel": novel,
        "offset": offset.astype(jnp.int32), "query_in_context": jnp.any(ctx == query[:, None], axis=1),
    }
    return Batch(inputs, targets, mask, info)


def in_context_test(cfg: ClassificationConfig) -> ClassificationConfig:
    """IC: bursty sequences of novel classes (p_B = p_C = 1); only in-context learning scores above chance."""
    return override(cfg, burstiness=cfg.novel_burstiness, p_bursty=1.0, p_novel=1.0, label_shift=0)


def label_swapped_test(cfg: ClassificationConfig) -> ClassificationConfig:
    """IC2: bursty sequences of seen classes with every label shifted to (label + 1) mod L, and the target the shifted
    label, so in-context learning must override the in-weights map. For B = 0 (where the reference's IC2 is not
    bursty at all) this uses bursts of `novel_burstiness`."""
    return override(cfg, burstiness=cfg.novel_burstiness, p_bursty=1.0, p_novel=0.0, label_shift=1 % cfg.n_labels)


def in_weights_test(cfg: ClassificationConfig) -> ClassificationConfig:
    """IW: non-bursty seen-class sequences (B = 0, p_B = p_C = 0); the query is drawn independently of the context."""
    return override(cfg, burstiness=0, p_bursty=0.0, p_novel=0.0, label_shift=0)


def eval_sets(cfg: ClassificationConfig) -> dict[str, ClassificationConfig]:
    """The reference's four evaluation sets, all sharing `cfg`'s instance: the training distribution, IC, IC2, IW."""
    return {"test": cfg, "ic": in_context_test(cfg), "ic2": label_swapped_test(cfg), "iw": in_weights_test(cfg)}

