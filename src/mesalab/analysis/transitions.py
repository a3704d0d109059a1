"""Where learning curves make their jump, per seed: the transitions the induction studies judge.

`abruptness` (analysis/phenomenology.py) measures one curve; these apply it to a part's per-seed curves. A curve
that never moves (an untrained model, a seed that never learned) has a transition whose times are all nan: it counts
against an "abrupt" finding, it is never dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mesalab.analysis.phenomenology import Transition, abruptness

NO_TRANSITION = Transition(*(float("nan"),) * 5, False)


def transitions(steps: Sequence[float], curves: Sequence[Sequence[float]], rising: bool) -> list[Transition]:
    """One transition per seed's curve (no transition when fewer than two samples were recorded)."""
    return [abruptness(np.asarray(steps), np.asarray(c), rising=rising) if len(steps) >= 2 else NO_TRANSITION
            for c in curves]


def rise_from(steps: Sequence[float], curves: Sequence[Sequence[float]], floor: float) -> list[Transition]:
    """Transitions of rising curves measured from `floor` (e.g. 1/N): values below it count as the plateau's start
    (a point (0, floor) is prepended), so the fast early rise to picking *some* context label (accuracy), or to
    attending evenly to the N labels (an induction score), is not mistaken for the jump."""
    if len(steps) == 0:
        return [NO_TRANSITION for _ in curves]
    padded = np.r_[0, np.asarray(steps, float)]
    out = []
    for c in curves:
        values = np.maximum(np.r_[floor, np.asarray(c, float)], floor)
        out.append(abruptness(padded, values, rising=True) if padded[-1] > 0 else NO_TRANSITION)
    return out


def windows_overlap(a: Transition, b: Transition) -> bool:
    """The two transitions' 10%→90% windows intersect (False when either has no transition)."""
    if not (np.isfinite(a.t10) and np.isfinite(b.t10)):
        return False
    return bool(max(a.t10, b.t10) <= min(a.t90, b.t90))


def lead(measure: Transition, jump: Transition) -> float:
    """How many steps before the jump's 10% crossing the measure reached 10% of its own change (positive: it moved
    first; nan when either has no transition)."""
    return float(jump.t10 - measure.t10)
