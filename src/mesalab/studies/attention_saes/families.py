"""Feature families of an SAE on the S6 model's hook_z, by rules stated before any run (issue 19: "classify features
by what predicts their activation ... rules stated in the study, not hand labels").

The S6 sequence is exemplar, label, exemplar, label, query (positions 0–4); the query repeats the exemplar of the
label at `match_position` − 1, so the label after the query's earlier occurrence sits at `match_position` (1 or 3).
Every token has a label identity: a label token its own label, an exemplar the label that follows it, the query its
target.

Per live feature (one that fires on at least one token of the analysis batch), with a = its activation and
DFA⁺[q, s] the positive part of its direct feature attribution to source s (sae_metrics: pattern · v · W_enc, summed
over heads), weighted by a at the firing token q:
- position share P(q): the share of the feature's total activation at position q;
- induction share: over its activations at the query, the share of a·DFA⁺ on the source `match_position`;
- previous-token share: over its activations at positions 3 and 4, the share of a·DFA⁺ on the source q − 1. Only
  those positions count: at 3 and 4 another earlier token of the same kind as q − 1 exists (an exemplar at 0, a
  label at 1), so the share cannot be met by a feature that reads exemplar or label content whatever the pattern;
- label η²: at its dominant position (argmax P), the share of the activation's variance explained by the token's
  label identity (the correlation ratio).

Rules, first match wins (thresholds: ours, fixed before any run):
1. induction: P(query) ≥ AT_QUERY and induction share ≥ SOURCE_SHARE. A head attending to one fixed position gets an
   induction share of ½ in expectation (match_position is 1 or 3 with equal odds), so the rule sits halfway between
   that and a perfect 1 (Kissane's induction features: fire on a repeated token, attribute to the token after its
   earlier occurrence; reference/induction.md §5.3).
2. previous-token: P(3) + P(4) ≥ AT_QUERY and previous-token share ≥ SOURCE_SHARE.
3. label identity: label η² ≥ LABEL_ETA2 (the label explains most of the activation's variance).
4. position: P(dominant position) ≥ POSITION_SHARE (the activation is predicted by position alone).
5. other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FAMILIES = ("induction", "previous-token", "label", "position", "other")
AT_QUERY = 0.5        # at least half the feature's activation where the rule is read
SOURCE_SHARE = 0.75   # halfway between a fixed-position head's ½ and a perfect 1
LABEL_ETA2 = 0.5      # the label explains most of the variance at the dominant position
POSITION_SHARE = 0.9  # nine tenths of the activation at one position
SINGLE_HEAD = 0.5     # a feature is single-head when ≥ 50% of its decoder norm² sits in one head's block (issue 19)
QUERY, PREV_POSITIONS = 4, (3, 4)


def label_identity(context_labels: np.ndarray, label: np.ndarray) -> np.ndarray:
    """[B, 5]: each token's label identity (see the module docstring)."""
    c = np.asarray(context_labels)
    return np.stack([c[:, 0], c[:, 0], c[:, 1], c[:, 1], np.asarray(label)], axis=1)


def _share(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def eta_squared(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Correlation ratio per column: values [N, F], groups [N] -> [F] (nan where the values do not vary)."""
    total = ((values - values.mean(0)) ** 2).sum(0)
    between = np.zeros(values.shape[1])
    for g in np.unique(groups):
        sel = values[groups == g]
        between += len(sel) * (sel.mean(0) - values.mean(0)) ** 2
    return _share(between, total)


def feature_stats(acts: np.ndarray, dfa: np.ndarray, match_position: np.ndarray, labels: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """The quantities the rules read, per feature. acts [B, 5, F] activations; dfa [B, 5 (q), 5 (s), F] direct
    feature attribution summed over heads; match_position [B]; labels [B, 5] label identities."""
    acts, dfa = np.asarray(acts, np.float64), np.asarray(dfa, np.float64)
    b = np.arange(acts.shape[0])
    mass = acts.sum((0, 1))
    position = _share(acts.sum(0), mass[None, :])                           # [5, F]
    weighted = acts[:, :, None, :] * np.maximum(dfa, 0.0)                    # [B, q, s, F]
    at_query = weighted[:, QUERY]                                            # [B, s, F]
    induction = _share(at_query[b, np.asarray(match_position)].sum(0), at_query.sum((0, 1)))
    prev_num = sum(weighted[:, q, q - 1].sum(0) for q in PREV_POSITIONS)
    prev_den = sum(weighted[:, q].sum((0, 1)) for q in PREV_POSITIONS)
    dominant = np.argmax(np.nan_to_num(position, nan=-1.0), axis=0)         # [F]
    eta = np.full(acts.shape[-1], np.nan)
    for q in range(acts.shape[1]):
        cols = np.flatnonzero(dominant == q)
        if cols.size:
            eta[cols] = eta_squared(acts[:, q][:, cols], np.asarray(labels)[:, q])
    return {"live": mass > 0, "position": position, "induction": induction, "prev": _share(prev_num, prev_den),
            "label_eta2": eta, "dominant": dominant}


def classify(stats: dict[str, np.ndarray]) -> np.ndarray:
    """[F] family index into FAMILIES (−1: dead) by the module's rules, first match wins."""
    pos = np.nan_to_num(stats["position"], nan=0.0)
    rules = [
        (pos[QUERY] >= AT_QUERY) & (np.nan_to_num(stats["induction"]) >= SOURCE_SHARE),
        (pos[list(PREV_POSITIONS)].sum(0) >= AT_QUERY) & (np.nan_to_num(stats["prev"]) >= SOURCE_SHARE),
        np.nan_to_num(stats["label_eta2"]) >= LABEL_ETA2,
        pos.max(0) >= POSITION_SHARE,
    ]
    out = np.full(pos.shape[1], len(FAMILIES) - 1)
    for i, rule in reversed(list(enumerate(rules))):  # first match wins: apply the first rule last
        out = np.where(rule, i, out)
    return np.where(stats["live"], out, -1)


def head_summary(family: np.ndarray, attribution: np.ndarray, marked: list[int]) -> dict[str, Any]:
    """What the findings read from one SAE: family [F] (−1 dead), attribution [F, n_heads] (decoder norm² shares),
    marked: the heads S6 marks as induction heads.

    single_head: share of live features with ≥ SINGLE_HEAD of their norm in one head; per_head: [head][family]
    counts of single-head features; polysemantic: heads with single-head features of ≥ 2 classified families
    (not "other"); mechanism_polysemantic: those among them that carry induction or previous-token features with
    another family; family_share: share of live features per family; induction_marked: share of the induction
    family's decoder norm² (summed over its features) in the marked heads (nan: no induction feature)."""
    live = family >= 0
    n_live = int(live.sum())
    top = attribution.argmax(1)
    single = live & (attribution.max(1) >= SINGLE_HEAD)
    n_heads = attribution.shape[1]
    per_head = np.zeros((n_heads, len(FAMILIES)), int)
    for f in np.flatnonzero(single):
        per_head[top[f], family[f]] += 1
    classified = per_head[:, :len(FAMILIES) - 1] > 0
    poly = [h for h in range(n_heads) if classified[h].sum() >= 2]
    mech = [h for h in poly if classified[h, 0] or classified[h, 1]]
    ind = family == 0
    mass = attribution[ind].sum(0)
    return {
        "n_live": n_live,
        "single_head": float(single.sum() / n_live) if n_live else float("nan"),
        "per_head": per_head.tolist(),
        "polysemantic": poly, "mechanism_polysemantic": mech,
        "family_share": {name: float((family == i).sum() / n_live) if n_live else float("nan")
                         for i, name in enumerate(FAMILIES)},
        "induction_marked": float(mass[marked].sum() / mass.sum()) if ind.any() else float("nan"),
        "induction_by_head": mass.tolist(),
    }
