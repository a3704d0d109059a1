"""The data-dependence sweeps: burstiness B, a second K row × B, within-class noise ε and Zipf α (Chan et al. 2022;
Reddy 2024 Fig. 2). Each sweep point records its final accuracies and its test-loss history (for the convergence
guard of the findings about the sweep's end)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab.config import override
from mesalab.studies.induction_classification.config import Config
from mesalab.studies.induction_classification.parts import finals, train_part
from mesalab.studies.protocol import RunContext
from mesalab.train.engine import Member

HALF_WAY = 0.5  # IC accuracy marking when a sweep point has learned in context (on the base task's IC test set)


def burstiness(cfg: Config, ctx: RunContext) -> list[dict[str, Any]]:
    """One part per B in burst_values (p_C = 0, K = burst_classes); the parts' own test sets are their task's."""
    return [train_part(cfg, ctx, f"burst-{b}", cfg.burst_task(b), cfg.burst_seeds, cfg.burst_steps, sweep=True)
            for b in cfg.burst_values]


def phase_diagrams(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    """Final IC and IW accuracy [value, seed] along K × B (a second K row) and along ε and α at B = phase_burstiness,
    with each point's test-loss history [value·seed, step] and its steps."""
    out: dict[str, Any] = {}
    if cfg.phase_classes != cfg.burst_classes and cfg.burst_values:
        row = [train_part(cfg, ctx, f"phase-k{cfg.phase_classes}-b{b}", cfg.burst_task(b, cfg.phase_classes),
                          cfg.phase_seeds, cfg.phase_steps, sweep=True) for b in cfg.burst_values]
        out["classes"] = {"n_classes": cfg.phase_classes, "burstiness": list(cfg.burst_values),
                          **{k: [finals(p, f"{k}_accuracy") for p in row] for k in ("ic", "iw")},
                          "steps": row[0]["steps"], "time": row[0]["time"], "test_loss": [p["curves"]["test_loss"] for p in row]}
    base = cfg.burst_task(cfg.phase_burstiness)
    # The reference picks a bursty sequence's classes uniformly, so with every sequence bursty α would change
    # nothing (measured: identical models at every α); the α sweep draws bursty classes from the Zipf law too.
    bases = {"eps": base, "zipf_alpha": override(base, bursty_classes="zipf")}
    for field, values in (("eps", cfg.phase_eps), ("zipf_alpha", cfg.phase_alpha)):
        if not values:
            continue
        members = [Member(seed, task={field: float(v)}) for v in values for seed in range(cfg.phase_seeds)]
        part = train_part(cfg, ctx, f"phase-{field}", bases[field], members, cfg.phase_steps, sweep=True)
        grid = lambda v: np.asarray(v).reshape(len(values), cfg.phase_seeds).tolist()  # noqa: E731 [value, seed]
        half = [first_step_at(part["steps"], c, HALF_WAY) for c in part["curves"]["ic_accuracy"]]
        out[field] = {
            "values": list(values),
            # Judged: test sets drawn at each member's own ε or α (the reference's test sets share the generator).
            "ic": grid(part["own"]["ic"]), "iw": grid(part["own"]["iw"]), "ic2": grid(part["own"]["ic2"]),
            # For comparison: the base task's test sets (ε = cfg.eps, uniform classes), as the curves are recorded.
            "ic_base": grid(finals(part, "ic_accuracy")), "iw_base": grid(finals(part, "iw_accuracy")),
            "ic_half_step": grid(half), "steps": part["steps"], "time": part["time"], "test_loss": part["curves"]["test_loss"]}
    return out


def first_step_at(steps, curve, level: float) -> float:
    """The first recorded step at which `curve` reaches `level` (nan if it never does): when a sweep point learned
    in context, which tells a late transition from none within the budget."""
    hit = np.nonzero(np.asarray(curve) >= level)[0]
    return float(np.asarray(steps)[hit[0]]) if hit.size else float("nan")
