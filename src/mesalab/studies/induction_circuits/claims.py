"""The findings and checks of the induction-circuits study (Singh et al. 2024; reference/induction.md §3), with their
thresholds and definitions, fixed from the paper and the notes before any run of this study.

Findings (each judged against untrained models: the runner's null run re-runs the pipeline at initialisation):
1. Additive and redundant heads, on the final unclamped all-heads models:
   - `several_heads`: with one layer-2 head kept (the others' values ablated), at least SEVERAL heads each reach
     WELL_ABOVE accuracy (authors, §3.4: 0.765, 0.752, 0.980 and 0.646 of 8 heads are ≥ 0.6; chance 0.5). Null:
     every head at ≈ 0.5, so 0 heads.
   - `best_head`: full accuracy minus the best kept head's ≤ FEW_POINTS (authors: 0.99999 vs 0.980). Null: both
     ≈ 0.5, a difference ≈ 0 that the statistic alone would pass; only the learned guard fails it (the row says so).
   - `redundant`: with the strongest head (by induction strength) ablated, accuracy ≥ WELL_ABOVE (authors, Table 2:
     the other heads get 17–72% of head 3's mistakes right). Null: ≈ 0.5.
2. `composition`: all layer-1 head values ablated while layer-2 patterns and values hold their clean values changes
   accuracy by < COMPOSITION (authors: 0.99999 → 0.99986). Null: ≈ 0 change (passes alone; the learned guard fails
   it). The detail gives the same ablation without preservation, which should hurt: layer 1 matters, by composition.
3. Subcircuit timing (one layer-2 head kept, the authors' Fig. 5b): `timing_<condition>` for perfect layer 1,
   perfect match and perfect copy: per seed, the unclamped run's phase-change step minus the clamped run's
   (same seed: same initial weights and data) > 0 in a strict majority of seeds (3 of 4, the issue's "≥ 3 of 4").
   An unclamped seed with no phase change within its budget is censored at the budget (its true step is later, so
   the difference shown is a lower bound); a clamped seed without one counts against. Null: no phase change at
   initialisation (loss ≈ ln 2 or above), nan.
4. Data dependence (Fig. 6): `classes` — the match subcircuit forms later with more classes: per seed, Spearman ρ
   between the class count and the phase-change step of the "layer 1 + copy" condition (only 3qk + 4 left to learn);
   `labels` — the copy subcircuit forms later with more labels: ρ between the label count and the phase-change step
   of the "perfect match" condition (only 3v + 5 left to learn). ρ ≥ MONOTONE in a strict majority of seeds; a grid
   point without a phase change is censored at the budget (ranked last). Null: no phase change anywhere, ρ = 0.
   A row that fails because most seeds changed at every grid point before the first evaluation is INCONCLUSIVE
   (`unresolved`: added after the first cpu run, recorded on the row as a definition change).

Guards: findings 1–2 are about the end of training: they first ask that each seed learned (final loss ≤ 0.4·ln 2,
the authors' phase-change rule) and are INCONCLUSIVE when training did not converge (studies/convergence.py, in
units of log L). Findings 3–4 ask when a threshold was crossed, so they carry no convergence guard; the phase-change
step is known only to the chunk_steps at which losses are recorded.

Checks: the unclamped runs make the phase change in every seed (the cpu recipe's criterion); the rank-1 toy model
(Fig. 5a) has a plateau that clamping b and c removes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from mesalab.studies.induction_circuits.parts import CONDITIONS, PHASE_LOSS
from mesalab.studies.induction_classification.claims_sweeps import spearman
from mesalab.studies.verdicts import (
    Claim,
    DefinitionChange,
    Learned,
    above,
    at_least,
    at_most,
    below,
    check,
    cross_entropy_convergence,
    finding,
)

SRC = "Singh et al. 2024 (reference/induction.md §3.1, §3.4)"
NULL = "untrained models at initialisation"
# "Well above chance": chance (0.5, one of two context labels) + 10 points; the authors' four best kept heads score
# 0.646–0.980, their fifth 0.588 (reference/induction.md §3.4).
WELL_ABOVE = 0.6
# "Several heads": at least two (one head alone is no additivity); the authors have four at ≥ 0.6.
SEVERAL = 2
# "Within a few points of the full model": the authors' best head is 2 points short (0.980 vs 0.99999).
FEW_POINTS = 0.05
# "Changes accuracy by < 1%": the issue's bound on the authors' 0.99999 → 0.99986.
COMPOSITION = 0.01
# Learned: final loss at most 0.4·ln 2 (margin 0.6 below ln 2), the authors' phase-change rule.
LEARNED_MARGIN = 0.6
# Monotone in a 3-point grid: ρ = 1, or one tie at an end (0.866; chunk resolution can tie two steps).
MONOTONE = 0.8
TIMED = ("perfect_layer", "perfect_match", "perfect_copy")


def final(part: dict[str, Any], metric: str) -> np.ndarray:
    return np.asarray([c[-1] if c else np.nan for c in part["curves"][metric]], float)


def learned(part: dict[str, Any]) -> Learned:
    return Learned.beats(final(part, "test_loss"), math.log(2), LEARNED_MARGIN,
                         "picking one of the two context labels at random (ln 2)")


def converged(cfg: Any, part: dict[str, Any]):
    return cross_entropy_convergence(part["steps"], part["curves"]["test_loss"], part.get("time"), cfg.n_labels)


def censored(steps: Any, budget: float) -> np.ndarray:
    """Phase-change steps with "never" (nan) censored at the budget."""
    v = np.asarray(steps, float)
    return np.where(np.isfinite(v), v, budget)


def earlier(unclamped: Any, clamped: Any, budget: float) -> np.ndarray:
    """Per seed, unclamped − clamped phase-change step; an unclamped seed that never changed counts at `budget` (a
    lower bound), a clamped one that never changed is nan (against)."""
    return censored(unclamped, budget) - np.asarray(clamped, float)


def grid_rhos(grid: Any, phase: Any, budget: float) -> np.ndarray:
    """Per seed, Spearman ρ of the grid value against the phase-change step (phase [point][seed]; never → ranked at
    the budget, after every finite step)."""
    p = np.asarray(phase, float)
    if p.size == 0:
        return np.asarray([np.nan])
    p = np.where(np.isfinite(p), p, budget + 1.0)
    return np.asarray([spearman(grid, p[:, s]) for s in range(p.shape[1])], float)


def _steps(xs: Any) -> str:
    return ", ".join("never" if not np.isfinite(x) else f"{x:.0f}" for x in np.asarray(xs, float))


def claims(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    return [*head_rows(cfg, r), *timing_rows(cfg, r), *scaling_rows(cfg, r), *check_rows(cfg, r)]


def head_rows(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    part, h = r["conditions"]["none/all"], r["heads"]
    guard, conv = learned(part), converged(cfg, part)
    budget = f"the unclamped run had {cfg.steps} steps; --set steps={2 * cfg.steps} would decide it"
    keep = np.asarray(h["keep_one"], float)  # [seed, head]
    full = np.asarray(h["full"], float)
    kept = "; ".join(f"seed {i}: " + ", ".join(f"{a:.2f}" for a in row) for i, row in enumerate(keep))
    rows = [finding(
        "several_heads", f"with one layer-2 head kept (the other {cfg.n_heads - 1} heads' values ablated), several "
        f"heads each score well above chance: the number of heads whose kept-alone accuracy is ≥ {WELL_ABOVE}", SRC,
        "induction heads are additive: kept alone, heads 0–7 score 0.403, 0.765, 0.752, 0.980, 0.428, 0.646, 0.292, "
        "0.588 (4 of 8 ≥ 0.6)", (keep >= WELL_ABOVE).sum(axis=1),
        at_least(SEVERAL, "ours: 'several' = at least two heads at chance + 10 points (authors: four)"),
        null=f"{NULL} (every head near 0.5: no head counts)", learned=guard, converged=conv, budget=budget,
        detail=f"kept-alone accuracy per seed and head: {kept}")]
    rows.append(finding(
        "best_head", "the best single kept head comes within a few points of the full model: full accuracy minus "
        "the best kept head's", SRC, "0.99999 (full) vs 0.980 (head 3 alone)", full - keep.max(axis=1),
        at_most(FEW_POINTS, "ours: 'a few points' = 5 (authors: 2)"), null=NULL, learned=guard, converged=conv,
        budget=budget, detail="full accuracy per seed: " + ", ".join(f"{a:.3f}" for a in full)))
    strongest = np.asarray(h["strongest"])
    rows.append(finding(
        "redundant", "ablating the strongest head (largest induction strength) leaves accuracy well above chance: "
        "the others compensate", SRC, "heads are redundant: the others get 17–72% of head 3's mistakes right",
        h["ablate_strongest"], at_least(WELL_ABOVE, "ours: chance (0.5) + 10 points"), null=NULL, learned=guard,
        converged=conv, budget=budget, detail="strongest head per seed: " + ", ".join(map(str, strongest.tolist()))
        + "; its induction strength: " + ", ".join(f"{np.asarray(s)[k]:.2f}" for s, k in zip(h["strength"], strongest))))
    change = np.abs(full - np.asarray(h["l1_ablated_preserved"], float))
    rows.append(finding(
        "composition", "layer 1 acts only through composition: |accuracy change| when every layer-1 head's values "
        "are ablated while layer-2 patterns and values hold their clean values", SRC, "0.99999 → 0.99986",
        change, below(COMPOSITION, "the issue: < 1% (authors: 0.013%)"),
        null=f"{NULL}; the control: the same ablation without preservation", learned=guard, converged=conv,
        budget=budget, detail="accuracy full / preserved ablation / unpreserved ablation per seed: " + "; ".join(
            f"{a:.3f} / {b:.3f} / {c:.3f}" for a, b, c in zip(full, h["l1_ablated_preserved"], h["l1_ablated"]))))
    return rows


def timing_rows(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    parts = r["conditions"]
    base = parts["none/one"]
    budget = float(base["steps"][-1]) if base["steps"] else float("nan")
    medians = {c: float(np.median(censored(parts[f"{c}/one"]["phase"], np.inf)))
               for c in CONDITIONS if f"{c}/one" in parts}
    order = " < ".join(f"{CONDITIONS[c]} ({'never' if not np.isfinite(m) else f'{m:.0f}'})"
                       for c, m in sorted(medians.items(), key=lambda kv: kv[1]))
    rows = []
    for c in TIMED:
        clamped = parts[f"{c}/one"]["phase"]
        rows.append(finding(
            f"timing_{c}", f"clamping {CONDITIONS[c]} makes the phase change (loss < 0.4·ln 2) earlier than no clamp "
            f"(one layer-2 head kept): unclamped minus clamped phase-change step, same seed", SRC,
            "each subcircuit clamped removes part of the plateau (Fig. 5b)", earlier(base["phase"], clamped, budget),
            above(0.0, "the issue: earlier in ≥ 3 of 4 seeds (a strict majority)"),
            null=f"{NULL} (no phase change: nan)",
            detail=f"phase-change step per seed, unclamped: {_steps(base['phase'])}; clamped: {_steps(clamped)} "
            f"(recorded every {cfg.chunk_steps} steps unclamped, {cfg.clamp_chunk_steps} clamped; an unclamped seed that never changed counts at its budget "
            f"{budget:.0f}, a lower bound; a clamped step equal to the first recorded one is an upper bound, so the "
            f"difference stays a lower bound); median order of all conditions: {order}"))
    return rows


def scaling_rows(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    rows = []
    for key, what, clamp, paper in (
            ("classes", "class count", "layer 1 + copy (only matching, 3qk + 4, left to learn)",
             "more classes slow the formation of the match subcircuit (B)"),
            ("labels", "label count", "perfect match (only copying, 3v + 5, left to learn)",
             "more labels slow the formation of the copy subcircuit (C)")):
        g = r[key]
        budget = float(g["steps"][-1]) if g["steps"] else float("nan")
        rhos = grid_rhos(g["grid"], g["phase"], budget)
        rows.append(unresolved(cfg, g, finding(
            key, f"the {'match' if key == 'classes' else 'copy'} subcircuit forms later with a larger {what}: per "
            f"seed, Spearman ρ between the {what} and the phase-change step under {clamp}", SRC + "; Fig. 6", paper,
            rhos, at_least(MONOTONE, "ours: monotone over the grid (ρ = 1, or one tie at chunk resolution)"),
            null=f"{NULL} (no phase change anywhere: ρ = 0)",
            detail=f"{what}s {g['grid']}; phase-change step per point (per seed): "
            + "; ".join(f"{v}: {_steps(p)}" for v, p in zip(g["grid"], g["phase"]))
            + f" (never: ranked after every step, at the budget {budget:.0f}; a step equal to the first recorded "
            "one is an upper bound)")))
    return rows


def unresolved(cfg: Any, g: dict[str, Any], row: Claim) -> Claim:
    """A grid row that fails because a majority of its seeds made the phase change at every grid point before the
    first recorded step (all tied at it: the recording interval cannot order them) is INCONCLUSIVE, with the
    resolution that would decide it. Added after the first cpu run, where every class count of every seed was
    below 0.4·ln 2 at the first evaluation (step 50); the row records its verdict under the old rule (FAIL)."""
    first = float(g["steps"][0]) if g["steps"] else float("nan")
    phase = np.asarray(g["phase"], float)
    tied = int(np.sum(np.all(phase == first, axis=0))) if phase.ndim == 2 else 0
    n = phase.shape[1] if phase.ndim == 2 else 0
    if row.verdict != "FAIL" or n == 0 or n - tied >= n // 2 + 1:
        return row
    change = DefinitionChange(
        "a seed whose phase-change steps all equal the first recorded step (left-censored: each happened at or "
        "before it) leaves the order undecided; with too few decided seeds the row is INCONCLUSIVE, not FAIL",
        "Singh et al. 2024 measure the phase change at evaluations every 1,000 steps of 3·10⁵ (Adam 1e-5), resolving "
        "it; a run whose every grid point changes before its first evaluation measures the recording interval, not "
        "the order", "FAIL", row.measured)
    return dataclasses.replace(row, verdict="INCONCLUSIVE", changes=(*row.changes, change), reason=(
        f"{tied} of {n} seeds made the phase change before the first evaluation (step {first:.0f}) at every grid "
        f"point, so the recording interval cannot order them; --set clamp_chunk_steps={max(1, int(first) // 10)} "
        "(or a lower lr) would decide it"))


def check_rows(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    parts = r["conditions"]
    phases = np.concatenate([np.asarray(parts[f"none/{v}"]["phase"], float) for v in ("one", "all")])
    rows = [check(
        "recipe", f"the unclamped runs (one head kept, and all heads) make the phase change (loss < "
        f"{PHASE_LOSS:.3f}) within their budget in every seed: the cpu recipe's criterion", "the issue's cpu scale",
        "a plateau, then a phase change, in every seed", np.isfinite(phases).astype(float),
        at_least(1.0, "every seed"), need=phases.size,
        detail=f"phase-change step per seed, one head: {_steps(parts['none/one']['phase'])}; all heads: "
        f"{_steps(parts['none/all']['phase'])}")]
    toy = r["toy"]
    p = toy["plateau"]
    rows.append(check(
        "toy", "the rank-1 toy model (plain GD) sits on a plateau that clamping b and c to their true values removes: "
        "steps to 10% of the initial loss, unclamped minus b, c clamped", "Singh et al. 2024 Fig. 5a "
        "(reference/induction.md §3.3)", "clamping multiplicative components removes the plateau",
        float(p["none"] - p["b, c"]), above(0.0, "shorter with the clamp"),
        detail="steps to 10% of the initial loss: " + ", ".join(f"{k}: {v}" for k, v in p.items())))
    return rows
