"""The findings and checks of the induction-heads study, with their thresholds and definitions (fixed before any run
of the current task; the changes made after results were seen are listed on their rows).

Findings (each FAIL on untrained models; the 1-layer model is the mechanism-removed control):
- abrupt: copying accuracy jumps after a plateau (cliff under a fifth of the plateau);
- circuit: a layer-1 previous-token head and a layer-2 head that prefix-matches on Olsson's repeated random tokens;
- coincide: that prefix-matching score jumps in the same window as the accuracy;
- copying: the layer-2 head copies (Olsson's copying evaluator).
Checks: the task is solved after training (the learned guard the findings apply, so not a finding of its own); the
1-layer model cannot learn the task (it cannot compose two heads: guaranteed by the architecture).

No row here carries the convergence guard: they ask whether a threshold was reached, and the cross-entropy of a
solved copying task keeps falling as its logits grow, so "still falling" does not make them undecided.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mesalab.analysis.phenomenology import ABRUPT_RATIO
from mesalab.analysis.transitions import rise_from, windows_overlap
from mesalab.studies.verdicts import (
    Claim, DefinitionChange, Learned, above, at_least, at_most, below, check, finding,
)

SRC = "Olsson et al. 2022; Reddy 2024 (seed 003); DESIGN.md §4 S5"
NULL = "untrained models at initialisation"
# Abrupt: the 10%→90% cliff is narrower than a fifth of the plateau before it (DESIGN.md §4 / issue 7's rule, shared
# with induction-classification through analysis.phenomenology.ABRUPT_RATIO).
ABRUPT = 1 / ABRUPT_RATIO
# Learned: the final test loss is at most half the log N of picking uniformly among the N context labels (the best
# predictor that does not match the query to its item; the plateau sits there).
LEARNED_MARGIN = 0.5
# Accuracy of a solved task (1/N is picking a context label at random).
FINAL_ACCURACY = 0.9
# A formed head puts most of its attention on the right token: previous-token and prefix-matching scores lie in
# [0, 1], the fraction of attention on the target positions (Olsson; TransformerLens detect_head "mul").
FORMED_SCORE = 0.5
# Olsson's copying score, rescaled to [−1, 1]: positive when the attended token gets more of the logit raise than the
# rest of the sample together (reference/induction.md §4).
COPYING_MIN = 0.0
# Why the repeated-token score averages block lengths 3, 4 and 6 (changed after a run that used blocks of 3 only, on
# a reviewer's point): with one short block the target sits at one fixed offset, which a head attending at that
# offset scores on without matching anything; Olsson's 25-token blocks make that impossible.
BLOCKS_WHY = ("Olsson et al. 2022 use 25-token blocks, where no fixed-offset head scores; with one 3-token block the "
              "target is always 2 back, so a relative-position head would score too")
# The 1-layer control: at most twice the 1/N of picking a context label.
CONTROL_FACTOR = 2.0


def final(part: dict[str, Any], metric: str) -> np.ndarray:
    return np.asarray([c[-1] if c else np.nan for c in part["curves"][metric]], float)


def learned(cfg: Any, part: dict[str, Any]) -> Learned:
    return Learned.beats(final(part, "test_loss"), math.log(cfg.n_pairs), LEARNED_MARGIN,
                         f"picking uniformly among the N = {cfg.n_pairs} context labels (log N)")


def claims(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    two, one = r["two"], r["one"]
    chance = 1.0 / cfg.n_pairs
    guard = learned(cfg, two)
    acc_one = final(one, "accuracy")
    control = f"1-layer control (no composition): final accuracy per seed {', '.join(f'{a:.3f}' for a in acc_one)}"
    null = f"{NULL}; the 1-layer model is the control with the mechanism removed"
    rows = []

    acc_t = rise_from(two["steps"], two["curves"]["accuracy"], chance)
    ratios = np.asarray([t.ratio for t in acc_t])
    rows.append(finding(
        "abrupt", "in-context copying is learned abruptly after a plateau: cliff width (10%→90% of the rise from the "
        "1/N of picking a context label) over plateau length (start → 10%)", SRC,
        "a phase change: plateau, then a sudden jump", ratios,
        below(ABRUPT, "DESIGN.md §4 S5 / analysis.phenomenology: a cliff under a fifth of the plateau"),
        null=null, learned=guard,
        detail="per seed: " + ", ".join(f"plateau {t.plateau:.0f}, cliff {t.width:.0f} steps" for t in acc_t)
        + f"; {control}",
        changes=(DefinitionChange(
            "the initialisation scale (0.07) and learning rate (3e-3) were chosen after runs, among settings where "
            "the jump did not show", "a plateau must exist to be measured: at init 0.1 it was too short to see, at "
            "0.02 / lr 1e-3 training never left it; the values are kept, unchanged, for the current task",
            "FAIL", None),)))

    prev, olsson = final(two, "prev_token_l1"), final(two, "prefix_matching_l2")
    blocks = ", ".join(str(b) for b in cfg.repeat_blocks)
    formed = np.minimum(prev, olsson)
    rule = above(FORMED_SCORE, "most of the head's attention on its target (scores are attention fractions)")
    by_block = "; ".join(f"block {b}: " + ", ".join(f"{x:.2f}" for x in final(two, f"prefix_matching_l2_b{b}"))
                         for b in cfg.repeat_blocks if f"prefix_matching_l2_b{b}" in two["curves"])
    changes = _old_rule_change(np.minimum(prev, final(two, "task_induction_l2")), rule,
                               "the induction score on the task's own sequences (where it is the query's attention "
                               "on the correct label, the accuracy mechanism itself)",
                               "issue 14 / Olsson et al. 2022: the induction score is measured on repeated random "
                               "tokens, independent of the task")
    if "prefix_matching_l2_b3" in two["curves"]:
        changes += _old_rule_change(np.minimum(prev, final(two, "prefix_matching_l2_b3")), rule,
                                    "the repeated-token score on blocks of 3 only", BLOCKS_WHY)
    rows.append(finding(
        "circuit", "the circuit is a previous-token head in layer 1 feeding an induction head in layer 2: the smaller "
        "of the final previous-token score (layer 1) and prefix-matching score on Olsson's repeated random tokens "
        f"(BOS + a random block repeated, mean over block lengths {blocks}; layer 2)", SRC,
        "a previous-token head composes with an induction head", formed, rule, null=null, learned=guard,
        detail="per seed (previous-token, prefix-matching on repeated tokens, on the task's own sequences): "
        + "; ".join(f"{a:.2f}, {b:.2f}, {c:.2f}" for a, b, c in zip(prev, olsson, final(two, "task_induction_l2")))
        + f"; prefix matching per block length, per seed: {by_block}", changes=changes))

    score_t = rise_from(two["steps"], two["curves"]["prefix_matching_l2"], 0.0)
    overlap = np.asarray([windows_overlap(a, b) for a, b in zip(acc_t, score_t)], float)
    task_t = rise_from(two["steps"], two["curves"]["task_induction_l2"], chance)
    old_overlap = np.asarray([windows_overlap(a, b) for a, b in zip(acc_t, task_t)], float)
    b3_changes = ()
    if "prefix_matching_l2_b3" in two["curves"]:
        b3_t = rise_from(two["steps"], two["curves"]["prefix_matching_l2_b3"], 0.0)
        b3 = np.asarray([windows_overlap(a, b) for a, b in zip(acc_t, b3_t)], float)
        b3_changes = (DefinitionChange("the repeated-token score on blocks of 3 only", BLOCKS_WHY,
                                       "PASS" if b3.sum() >= len(b3) // 2 + 1 else "FAIL", float(b3.mean())),)
    rows.append(finding(
        "coincide", "the layer-2 prefix-matching score on Olsson's repeated random tokens jumps when the copying "
        "accuracy does: its 10%→90% window overlaps the accuracy's (1 per seed when they overlap)", SRC,
        "induction heads form exactly when in-context learning appears", overlap,
        at_least(1.0, "Olsson et al. 2022: the heads form in the same window as the phase change"), null=null,
        detail="per seed, accuracy window / score window (steps): " + "; ".join(
            f"{a.t10:.0f}–{a.t90:.0f} / {b.t10:.0f}–{b.t90:.0f}" for a, b in zip(acc_t, score_t)),
        changes=(DefinitionChange(
            "the score was the prefix-matching score on the task's own sequences, judged as a share of seeds ≥ 75%",
            "issue 14 / Olsson et al.: the induction score is measured on repeated random tokens, independent of the "
            "task; on the task's sequences it moves with accuracy by construction",
            "PASS" if old_overlap.mean() >= 0.75 else "FAIL", float(old_overlap.mean())),) + b3_changes))

    # A check, not a finding (review of issue 14): "the task is solved" restates the learned guard that every
    # finding above already applies, so counting it would add a pass that no paper statement stands behind.
    rows.append(check(
        "accuracy", "after training the 2-layer model copies in context (the precondition of the findings): "
        "accuracy on fresh sequences", SRC, "the task is solved once the induction head has formed",
        final(two, "accuracy"), at_least(FINAL_ACCURACY, "a solved task (chance 1/N)"), detail=control))

    copying = final(two, "copying_l2")
    rule = above(COPYING_MIN, "Olsson et al.'s copying evaluator, rescaled to [−1, 1]: positive = the attended token "
                 "gets more than half of the raise")
    old = final(two, "ov_eigen_l2")
    rows.append(finding(
        "copying", "the layer-2 head copies what it attends to: Olsson's copying score over the label tokens (share "
        "of the ReLU logit raise on the attended token, rescaled 2·share − 1)", SRC,
        "induction heads copy: attending to a token raises its logit", copying, rule, null=null, learned=guard,
        detail="OV-eigenvalue score Σλ/Σ|λ| per seed: " + ", ".join(f"{x:+.2f}" for x in old),
        changes=_old_rule_change(old, above(0.0, "the sign of the OV eigenvalues"),
                                 "the OV-eigenvalue score Σλ/Σ|λ| > 0 (Elhage et al.'s form)",
                                 "issue 14: the copying threshold comes from Olsson et al.'s own evaluator, where a "
                                 "random OV circuit is positive about half the time under the eigenvalue form")))

    limit = CONTROL_FACTOR / cfg.n_pairs
    rows.append(check(
        "one_layer_control", f"a 1-layer model trained the same way does not learn the task: final accuracy "
        f"(1/N = {chance:.3g})", SRC, "one-layer models form no induction heads (by architecture here: a label's "
        "key cannot carry its item without a previous-token head before it)", acc_one,
        at_most(limit, "twice the 1/N of picking a context label")))
    return rows


def _old_rule_change(old_values: np.ndarray, old_rule, what: str, why: str) -> tuple[DefinitionChange, ...]:
    """The verdict under the old definition (`what`, judged on the median seed as rows were then)."""
    med = float(np.median(old_values)) if np.isfinite(old_values).any() else float("nan")
    verdict = "PASS" if bool(old_rule.holds(med)) else "FAIL"
    return (DefinitionChange(f"judged {what}, on the median seed", why, verdict, med),)
