"""The findings and checks of the sequential-functions study, with their thresholds (fixed before any run).

Errors are mean squared errors against the clean labels, in units of Var(y) = 1, at each example position t = 1 … N
of the fixed evaluation set (the model has seen t − 1 examples). "last" is position N.

Findings (each judged per seed, a strict majority of seeds needed; each FAILs on untrained models, the runner's null):
- falls (p = 0): the error falls with the number of examples: error at the last position ≤ ½ × the error at the
  first, where no example has been seen (Campbell et al.'s abstract; Garg et al.'s error curves fall to ≈ 0 once
  the examples identify the function). A learner that ignores the context keeps its error (ratio ≥ 1).
- approaches-lsq (p = 0): at the last position the model closes ≥ 90% of the gap between the no-context predictor
  and least squares on the window features ((none − model) / (none − lsq)); Garg et al. report transformers that
  match least squares. The window-blind learner's share is shown beside it: the rule rejects it.
- noise-hurts: the last-position error rises with p: Spearman ρ(p, error) over the grid ≥ 0.8 (at most one adjacent
  pair out of order on a 4-point grid), per seed (Campbell et al.: "performance gets worse as label randomness
  grows").
- beats-no-context (p = moderate_p): the last-position error stays clearly below the no-context predictor's: ratio ≤
  0.9 (Campbell et al.: the models "keep some ICL ability … though not to the extent one might expect"; 10% margin
  for the estimate's noise).
Check: least squares on the window features is exact once the examples identify w (a baseline implementation).
Guards: learned (p = 0: final test loss ≤ ½ × the no-context loss) and converged (studies/convergence.py) on the
training curves of the members judged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab.studies.convergence import convergence
from mesalab.studies.verdicts import Claim, Learned, at_least, at_most, check, finding

SRC = "Campbell et al. 2023 (abstract); Garg et al. 2022; reference/icll.md §3, §4.2"
NULL = "untrained models at initialisation (and, beside it, the window-blind least-squares learner)"
FALLS = 0.5          # last-position error over first-position error
GAP_CLOSED = 0.9     # share of the no-context → least-squares gap the model closes at the last position
RANK = 0.8           # Spearman ρ(p, last-position error) over the noise grid
BEATS = 0.9          # last-position error over the no-context error at the moderate p
LEARNED_MARGIN = 0.5  # the final test loss is at most half the no-context predictor's
EXACT = 1e-4         # least squares once identified (float32)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-D arrays (ties at their mean rank)."""
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for x in np.unique(v):  # ties share their mean rank
            r[v == x] = r[v == x].mean()
        return r
    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _key(p: float) -> str:
    return f"{p:g}"


def _conv(r: dict[str, Any], ps: list[float]):
    curves = [c for p in ps for c in r["by_p"][_key(p)]["curves"]]
    return convergence(r["steps"], curves, r["time"])


def claims(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    clean = r["by_p"][_key(0.0)]
    model = np.asarray(clean["model"], float)                 # [seed, position]
    lsq, blind, none = (np.asarray(clean[k], float) for k in ("lsq", "blind", "none"))
    budget = f"at cpu scale the ensemble trains {cfg.steps} steps; a longer run (--set steps=…) would decide it"
    # ½·(squared error) is the engine's loss; the no-context predictor's mean over the positions in the loss:
    guard = Learned.beats([0.5 * float(np.mean(m)) for m in model], 0.5 * float(np.mean(none)), LEARNED_MARGIN,
                          "the no-context predictor 0")
    conv_clean, conv_all = _conv(r, [0.0]), _conv(r, r["grid"])
    rows = []

    ratio = model[:, -1] / model[:, 0]
    rows.append(finding(
        "falls", "the error falls with the number of in-context examples (p = 0): error at the last example position "
        "over the error at the first, where nothing has been seen", SRC,
        "toy GPT-2 models learn the sliding-window sequential function class in context", ratio,
        at_most(FALLS, "Garg et al. 2022: error falls to ≈ 0 once the examples identify the function"), null=NULL,
        learned=guard, converged=conv_clean, budget=budget,
        detail="error at positions 1 / N per seed: " + "; ".join(f"{a:.3f} / {b:.3f}" for a, b in model[:, [0, -1]])
        + f"; no-context {none[0]:.3f} / {none[-1]:.3f}"))

    gap = none[-1] - lsq[-1]
    closed = (none[-1] - model[:, -1]) / gap
    rows.append(finding(
        "approaches-lsq", "at the last position the model's error approaches least squares on the window features "
        "(p = 0): the share of the no-context → least-squares gap it closes", SRC,
        "the models learn the class in context (Garg et al.: transformers match least squares)", closed,
        at_least(GAP_CLOSED, "Garg et al. 2022: transformers match the least-squares error curve"), null=NULL,
        learned=guard, converged=conv_clean, budget=budget,
        detail=f"last-position errors: model per seed {', '.join(f'{x:.4f}' for x in model[:, -1])}; least squares "
        f"{lsq[-1]:.2e}; window-blind least squares {blind[-1]:.3f} (closes {(none[-1] - blind[-1]) / gap:.0%}); "
        f"no context {none[-1]:.3f}"))

    grid = np.asarray(r["grid"], float)
    last = np.asarray([np.asarray(r["by_p"][_key(p)]["model"], float)[:, -1] for p in grid])  # [p, seed]
    rho = np.asarray([spearman(grid, last[:, s]) for s in range(last.shape[1])])
    rows.append(finding(
        "noise-hurts", "the last-position error grows with the share p of random labels shown: Spearman ρ(p, error) "
        f"over p ∈ {{{', '.join(f'{p:g}' for p in grid)}}}", SRC,
        "performance gets worse as label randomness grows", rho,
        at_least(RANK, "Campbell et al. 2023: worse as randomness grows (≥ 0.8: at most one adjacent pair swapped)"),
        null=NULL, converged=conv_all, budget=budget,
        detail="last-position error per p (rows) and seed: " + "; ".join(
            f"p={p:g}: " + ", ".join(f"{x:.3f}" for x in row) for p, row in zip(grid, last))))

    mod = r["by_p"][_key(cfg.moderate_p)]
    m_last = np.asarray(mod["model"], float)[:, -1]
    rows.append(finding(
        "beats-no-context", f"with p = {cfg.moderate_p:g} of the shown labels random, the model still uses the "
        "context: its last-position error over the no-context predictor's", SRC,
        "the models keep some ICL ability under randomised labels, 'though not to the extent one might expect'",
        m_last / mod["none"][-1],
        at_most(BEATS, "Campbell et al. 2023: some ICL ability is kept (10% margin for the estimate's noise)"),
        null=NULL, converged=conv_all, budget=budget,
        detail=f"at p = {cfg.moderate_p:g}: model {', '.join(f'{x:.3f}' for x in m_last)}; least squares on the "
        f"noisy labels {mod['lsq'][-1]:.3f}; window-blind {mod['blind'][-1]:.3f}; no context {mod['none'][-1]:.3f}"))

    identified = cfg.window * cfg.d  # unknowns of w: identified from that many examples (positions > it)
    exact = lsq[identified + 1:] if len(lsq) > identified + 1 else np.asarray([np.nan])
    rows.append(check(
        "lsq-exact", f"least squares on the window features is exact once {identified} examples identify w (p = 0): "
        "its largest error at positions after that", SRC, "the baseline the model is compared with",
        float(np.max(exact)), at_most(EXACT, "float32 round-off")))
    return rows
