"""The protocol's convergence rule (studies/verdicts.py states it with the others): a finding about the end of
training is judged only when the median evaluation loss fell by less than CONVERGED_DROP over the last quarter of
training, measured in optimizer time Σ lr / peak lr, and for a cross-entropy in units of log C. `finding()` turns a
run that did not converge into INCONCLUSIVE and records the verdict under the earlier rule where it differs."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

# The protocol's one convergence rule: the median evaluation loss fell by less than 2% over the last quarter of
# training (issue 14's rule; the quarter in optimizer time since the review).
CONVERGED_DROP = 0.02
# The convergence rule's one change after results were seen (recorded on every row whose verdict it changes).
CONVERGENCE_CHANGE = ("convergence: last quarter of the steps, fall relative to the loss → last quarter of optimizer "
                      "time Σ lr, fall in units of log C for a cross-entropy")
CONVERGENCE_WHY = ("issue 14's review: a rate decayed to ≈ 0 stops the loss at any budget, so the per-step rule called "
                   "annealed runs converged; a cross-entropy on a solved task falls toward 0 as its logits grow, so a "
                   "relative fall never settles")


@dataclasses.dataclass(frozen=True)
class Convergence:
    """The protocol's convergence rule applied to one training run.

    drop: the fall of the median evaluation loss over the last quarter of optimizer time, relative to the loss at
    the quarter's start (or in units of a scale such as log C for a cross-entropy); converged when below
    CONVERGED_DROP. start_step: the step where that quarter begins; steps: the last step. old_converged, old_drop:
    the rule before issue 14's review (last quarter of the steps, relative fall), for the definition-change record.
    """

    converged: bool
    drop: float
    steps: int
    start_step: int = 0
    scale_name: str = ""
    old_converged: bool | None = None
    old_drop: float | None = None

    @property
    def text(self) -> str:
        unit = f"in units of {self.scale_name}" if self.scale_name else "relative"
        return (f"median eval loss fell {self.drop:.1%} ({unit}) over the last quarter of optimizer time Σ lr, "
                f"steps {self.start_step}–{self.steps} (converged: < {CONVERGED_DROP:.0%})")

    @property
    def changed(self) -> bool:
        """Whether the rule before the review decides otherwise."""
        return self.old_converged is not None and self.old_converged != self.converged


def convergence(steps: Sequence[float], losses: Any, time: Sequence[float] | None = None,
                scale: tuple[float, str] | None = None) -> Convergence | None:
    """The convergence rule on a loss history: steps [S], losses [seed, S] (or [S]).

    time: optimizer time Σ η_t / η_peak at each recorded step (`train.optim.optimizer_time`); None: a constant rate
    (time = steps). scale: (value, name) of the loss's unit when it has no positive floor (for a cross-entropy,
    (log C, "log C")); None: the fall is relative to the loss at the quarter's start. Returns None when there is no
    history to judge (fewer than two recorded steps, e.g. untrained models)."""
    steps = np.asarray(steps, float)
    curve = np.asarray(losses, float)
    curve = np.median(curve.reshape(-1, steps.size), axis=0) if curve.size else curve
    if steps.size < 2 or steps[-1] <= steps[0]:
        return None
    clock = steps if time is None else np.asarray(time, float)
    if clock.shape != steps.shape or np.any(np.diff(clock) < 0) or clock[-1] <= clock[0]:
        raise ValueError(f"convergence: time has shape {clock.shape} for {steps.size} steps, or does not increase; "
                         "expected one non-decreasing value per recorded step")
    start_time = clock[0] + 0.75 * (clock[-1] - clock[0])
    at_start = float(np.interp(start_time, clock, curve))
    unit = scale[0] if scale else abs(at_start)
    drop = (at_start - float(curve[-1])) / unit if unit else 0.0
    old_at = float(np.interp(steps[0] + 0.75 * (steps[-1] - steps[0]), steps, curve))
    old_drop = (old_at - float(curve[-1])) / abs(old_at) if old_at else 0.0
    start_step = int(round(float(np.interp(start_time, clock, steps))))
    return Convergence(bool(drop < CONVERGED_DROP), float(drop), int(steps[-1]), start_step,
                       scale[1] if scale else "", bool(old_drop < CONVERGED_DROP), float(old_drop))


def cross_entropy_convergence(steps: Sequence[float], losses: Any, time: Sequence[float] | None, n_classes: int
                              ) -> Convergence | None:
    """The convergence rule on a cross-entropy over n_classes: its fall in units of the uniform predictor's log C."""
    return convergence(steps, losses, time, (math.log(n_classes), f"log {n_classes} = {math.log(n_classes):.3g}"))


def least_converged(*convs: Convergence | None) -> Convergence | None:
    """Runs judged together: converged only when every one is (under either rule); the run that fell most stands for
    the group. Runs without a history (None) are left out; None when no run has one (untrained models)."""
    convs = tuple(c for c in convs if c is not None)
    if not convs:
        return None
    worst = max(convs, key=lambda c: c.drop)
    olds = [c.old_converged for c in convs]
    return dataclasses.replace(worst, converged=all(c.converged for c in convs),
                               old_converged=None if None in olds else all(olds),
                               old_drop=max(c.old_drop or 0.0 for c in convs))
