"""The findings of the repeated-data study, with their thresholds (fixed before any run).

Every row is judged per seed (a strict majority of seeds needed), separately for each model: the attention-only
one (ids as below) and the one with MLPs (ids with "-mlp"). A seed's models at different r share their initial
weights and fresh rows, so each comparison is paired. L(r): the final loss on unique data (measures.py). The
damaging r, r*: the r > 1 with the highest final unique loss, averaged over seeds (the top of the peak).

Findings (Hernandez et al. 2022, abstract and introduction; reference/induction.md §6), each against r = 1 (no
repetition) and FAILing on untrained models, the runner's null (identical at every r):
- peak: the unique loss peaks at an intermediate r: (max over interior r of L(r) − max(L(r_min), L(r_max))) / L(1)
  ≥ 1%. The paper's peak costs as much as halving the model (800M → 400M); under Kaplan et al.'s L ∝ N^−0.076 that
  is ≈ 5% of the loss, and 1% is a fifth of it, a floor above the seed-to-seed noise of a paired comparison.
- damage-induction: at r*, the induction head's prefix-matching score (S5's induction score) is lower than at r = 1:
  PM(r*) − PM(1) ≤ −0.05, 5% of the score's range [0, 1] ("repetition disproportionately damages … induction heads").
- damage-copying: likewise Olsson's copying score of that head: C(r*) − C(1) ≤ −0.1, 5% of its range [−1, 1].
- rise: in at least one damaging run, unique test loss rises for a while mid-training (double descent): the largest
  rise of the loss curve above its running minimum (on a 3-evaluation moving average, so one noisy evaluation is
  not "a while"), the largest over r > 1 minus the same at r = 1, in units of L(1): ≥ 1% (the peak's scale).
Guards: learned, the r = 1 model of each seed learned to copy (its loss on the copyable tokens ≤ ½ log n_tokens,
half the loss of guessing a random span token), so that there is an induction head to damage; converged (the
cross-entropy rule of studies/convergence.py on every member's unique-loss curve) for the rows about the end of
training (peak, damage-*); the rise is about the path, not the end.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mesalab.studies.convergence import cross_entropy_convergence
from mesalab.studies.verdicts import Claim, Learned, at_least, at_most, finding, not_run

SRC = "Hernandez et al. 2022 (abstract, introduction); reference/induction.md §6"
NULL = "untrained models (identical at every r); the reference within each row is r = 1, no repetition"
PEAK = 0.01             # relative excess of the interior peak over both ends of the r grid
DROP = {"prefix_matching": -0.05, "copying": -0.1}  # score at r* minus at r = 1: 5% of each score's range
RISE = 0.01             # a damaging run's mid-training rise beyond r = 1's, in units of L(1)
SMOOTH = 3              # evaluations in the moving average the rise is measured on
LEARNED_MARGIN = 0.5    # the r = 1 copy loss is at most half of log n_tokens
PART_IDS = {"attention-only": "", "mlp": "-mlp"}
PART_NAMES = {"attention-only": "attention-only model", "mlp": "model with MLPs"}


def final(results: dict[str, Any], part: str, measure: str) -> np.ndarray:
    """[r, seed]: the measure's last evaluated value."""
    c = results["parts"][part]["curves"][measure]
    return np.asarray([[seed[-1] for seed in c[str(r)]] for r in results["repeats"]], float)


def damaging(results: dict[str, Any], part: str) -> int:
    """Index in the r grid of r*: the r > 1 with the highest seed-mean final unique loss."""
    loss = final(results, part, "unique_loss").mean(axis=1)
    return 1 + int(np.argmax(loss[1:]))


def rise(curve: Any) -> float:
    """The largest rise of a loss curve above its running minimum, on a SMOOTH-point moving average (0 when the
    curve is shorter)."""
    c = np.asarray(curve, float)
    if c.size < SMOOTH:
        return 0.0
    s = np.convolve(c, np.ones(SMOOTH) / SMOOTH, mode="valid")
    return float(np.max(s - np.minimum.accumulate(s)))


def _rows(cfg: Any, results: dict[str, Any], part: str) -> list[Claim]:
    sfx, who = PART_IDS[part], PART_NAMES[part]
    grid = results["repeats"]
    res = results["parts"][part]
    loss = final(results, part, "unique_loss")                   # [r, seed]
    copy1 = final(results, part, "copy_loss")[0]
    learned = Learned.beats(copy1, math.log(cfg.n_tokens), LEARNED_MARGIN, "guessing a random span token (r = 1)")
    curves = [c for r in grid for c in res["curves"]["unique_loss"][str(r)]]
    conv = cross_entropy_convergence(res["steps"], curves, res["time"], cfg.n_tokens)
    budget = f"the cpu preset trains {cfg.steps} steps; a longer run (--set steps=…) would decide it"
    k = damaging(results, part)
    rows = []

    ends = np.maximum(loss[0], loss[-1])
    excess = (loss[1:-1].max(axis=0) - ends) / loss[0]
    rows.append(finding(
        "peak" + sfx, f"{who}: the final loss on unique data peaks at an intermediate repetition count: the interior "
        "peak's excess over the worse end of the r grid, relative to the loss at r = 1", SRC,
        "a predictable middle range of repetition counts degrades performance most (800M → 400M-equivalent)", excess,
        at_least(PEAK, "Hernandez et al.: halving the model ≈ 5% of loss (Kaplan N^−0.076); a fifth of it", "%"),
        null=NULL, learned=learned, converged=conv, budget=budget,
        detail="final unique loss per r (rows) and seed: " + "; ".join(
            f"r={r}: " + ", ".join(f"{x:.4f}" for x in row) for r, row in zip(grid, loss))))

    for measure, name in (("prefix_matching", "induction"), ("copying", "copying")):
        score = final(results, part, measure)
        diff = score[k] - score[0]
        rows.append(finding(
            f"damage-{name}{sfx}", f"{who}: at the damaging r* = {grid[k]}, the induction head's "
            f"{'prefix-matching (induction)' if name == 'induction' else 'copying'} score minus its value at r = 1",
            SRC, "repetition disproportionately damages copying and induction heads", diff,
            at_most(DROP[measure], "a drop of 5% of the score's range (Olsson et al.'s evaluators)"),
            null=NULL, learned=learned, converged=conv, budget=budget,
            detail=f"{measure} per r (rows) and seed: " + "; ".join(
                f"r={r}: " + ", ".join(f"{x:.3f}" for x in row) for r, row in zip(grid, score))))

    ups = np.asarray([[rise(c) for c in res["curves"]["unique_loss"][str(r)]] for r in grid])  # [r, seed]
    beyond = (ups[1:].max(axis=0) - ups[0]) / loss[0]
    rows.append(finding(
        "rise" + sfx, f"{who}: in a run with repetition, the unique test loss rises for a while mid-training: the "
        f"largest rise above its running minimum ({SMOOTH}-evaluation average) over r > 1, beyond r = 1's, "
        "relative to L(1)", SRC, "repeated data can make test loss increase midway through training (double descent)",
        beyond, at_least(RISE, "the peak's scale (1% of the loss)", "%"), null=NULL, learned=learned,
        detail="largest rise per r (rows) and seed: " + "; ".join(
            f"r={r}: " + ", ".join(f"{x:.4f}" for x in row) for r, row in zip(grid, ups))))
    return rows


def claims(cfg: Any, results: dict[str, Any]) -> list[Claim]:
    rows = []
    for part in PART_IDS:
        if part in results["parts"]:
            rows += _rows(cfg, results, part)
            continue
        for rid in ("peak", "damage-induction", "damage-copying", "rise"):
            rows.append(not_run(rid + PART_IDS[part], f"{PART_NAMES[part]}: {rid}", SRC, "see the attention-only row",
                                "as the attention-only row", f"the preset trains only {', '.join(cfg.parts)}",
                                null=NULL))
    return rows
