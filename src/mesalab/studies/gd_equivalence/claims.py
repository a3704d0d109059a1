"""The findings and checks of gd-equivalence: pure functions from the run's results to rows (studies/verdicts.py).

Thresholds and definitions are module constants, each with its source, fixed before the results they judge. Every
finding about a trained model carries the learned guard (LEARNED_MARGIN below the zero predictor) and names its
null: the same pipeline on untrained models (the runner attaches it), plus a control with the mechanism removed
where one fits, whose value is in the row's detail.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab.studies.verdicts import (
    Claim, DefinitionChange, Learned, above, at_least, at_most, below, check, convergence, finding, not_run, per_seed,
    within,
)

SRC = "von Oswald et al. 2023 §3, Fig. 2; DESIGN.md §4 S1"
SRC_DEEP = "von Oswald et al. 2023 §4, Fig. 3 (deeper LSA and GD++); DESIGN.md §4 S1"
SRC_NONLINEAR = "von Oswald et al. 2023 §5 (linear models on deep data representations); reference/mesa.md §1.2, §1.5"
SRC_COPY = "von Oswald et al. 2023 §5 (interleaved tokens, the induction-head link); reference/mesa.md §1.6"

GD1_TOLERANCE = 0.02  # DESIGN.md §4 S1: trained loss within 2% of optimal GD-1
COSINE_MIN = 0.99  # DESIGN.md §4 S1: cosine of ∂ŷ/∂x_q (TF vs GD) ≥ 0.99
PRED_DIFF_MAX = 0.10  # reference/mesa.md §1.8 [M]: 0.021 at predictions O(0.6), ≈ 3.5%; 10% is ~3× looser
WEIGHT_TOLERANCE = 0.05  # DESIGN.md §4 S1: scale × PW_V y-entry = −η*/N within 5%
OFFDIAG_MAX = 0.05  # reference/mesa.md §1.8 [M]: off-diagonal 0.004 vs diagonal 0.507 (0.8%); 5% is ~6× looser
INTERP_TOLERANCE = 0.02  # "the interpolated model has the same loss": within 2%, as the GD-1 finding
TRANSFER_GAP = 0.10  # reference/mesa.md §1.6: the paper draws TF and GD curves on top of each other; ≤ 10% apart
GDPP_MATCH = 0.10  # DESIGN.md §4 S1 "matches GD++": the trained stack's loss within 10% of GD++, either side
# "MLP + LSA reaches MLP + GD": the trained model's loss within 10% of the baseline's, either side, per seed pair —
# the study's band for "matches" (GDPP_MATCH, DESIGN.md §4 S1). The paper draws the two loss curves together and
# prints no number. Fixed before the first cpu run of the preset (two one-seed trial runs of other budgets had
# shown −14% and +70%, i.e. at those budgets the band was not yet decided either way).
NONLINEAR_MATCH = 0.10
COPY_DOMINANCE = 2.0  # a copying head reads mostly one token: the neighbour ≥ 2× the token itself and any other
# Learned guard: a trained model must remove at least a quarter of the zero predictor's loss. GD-1, the weakest
# algorithm a finding compares with, removes 51% (0.208 vs 0.421 at U(±0.5), reference/mesa.md §1.7), so a model
# that learned what the findings describe clears it; one on its initial plateau (the zero predictor) does not.
LEARNED_MARGIN = 0.25
# [M] reference numbers: GD with K steps at the line-searched η (K = 1…5), d = N = 10, 10⁴ tasks, from the
# reference author's own re-implementation (reference/mesa.md §1.7), not from the paper, which prints none.
REFERENCE_GD = {0.5: (0.208, 0.158, 0.136, 0.121, 0.111), 1.0: (0.830, 0.631, 0.535, 0.477, 0.434)}
REFERENCE_TASKS = 10_000
# A baseline reproduces a reference number when within 3 combined standard errors (this run's validation tasks and
# the reference's 10⁴, each from the per-task spread of the GD-1 loss measured here).
BASELINE_SIGMAS = 3.0
# An exact construction reproduces its algorithm to float32 round-off: largest |difference| over the validation
# tasks relative to the mean |prediction| ≤ 1e-3 (ε = 1.2e-7, amplified by K layers of sums over d·N terms and by
# taking the worst of 10⁴ tasks; algorithmic differences are ~10%, e.g. GD-1 vs GD-2).
CONSTRUCTION_TOL = 1e-3
NULL = "untrained models at initialisation (≈ the zero predictor)"
BUDGET_ONE = "the paper preset (5k steps at batch 2048) would decide it"
# What is known about the budget that would decide "matches GD++" at each depth (measured, not thresholds).
BUDGET_DEEP = {
    3: "measured on this CPU (4 seeds, batch 1024): 4k steps gave +5.0%, 16k steps (9 min alone) −0.6%, with the "
       "noisy evaluation loss of a 1e-2 peak rate still counted as falling 23% over the last quarter of optimizer time",
    4: "one seed at batch 2048 came within −10% after 4k steps (Config comment)",
    5: "one seed at batch 2048 reached +19% after 12k steps, ten minutes of this CPU (Config comment)",
}
BUDGET_PAPER = "the paper preset (50k steps at batch 2048, a GPU budget) would decide it"


def claims(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    return (one_layer_rows(cfg, r) + transfer_rows(cfg, r) + depth_rows(r.get("depth"), r["zero_loss"])
            + [copy_row(r.get("copying"), r["zero_loss"]), nonlinear_row(r.get("nonlinear"))] + check_rows(cfg, r))


def _learned(losses: Any, zero: float) -> Learned:
    return Learned.beats(losses, zero, LEARNED_MARGIN, "the zero predictor")


def _converged(history: dict[str, Any] | None):
    return None if not history else convergence(history["steps"], history["loss"], history.get("time"))


def one_layer_rows(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    m = {k: np.asarray(v, float) for k, v in r["members"].items()}
    gd, zero, eta, n = r["gd_loss"], r["zero_loss"], r["eta"], cfg.n_context
    target = -eta / n
    learned, conv = _learned(m["loss"], zero), _converged(r.get("history"))
    guards = dict(learned=learned, converged=conv, budget=BUDGET_ONE)
    ref = REFERENCE_GD.get(cfg.x_half_width, (None,))[0]
    zero_rel = zero / gd - 1.0
    return [
        finding("gd1-loss", "trained 1-layer LSA test loss within 2% of optimal one-step GD (L_TF / L_GD-1 − 1)", SRC,
                f"LSA ≈ GD-1 (GD-1 = {ref if ref else '–'} at U(±{cfg.x_half_width:g}) in the reference's "
                f"re-implementation [M]; here {gd:.4f} at η* = {eta:.3f})", m["loss"] / gd - 1.0,
                within(GD1_TOLERANCE, "DESIGN.md §4 S1", "%"),
                null=f"{NULL}; control: the zero predictor, {zero_rel:+.0%}",
                detail=f"{per_seed('{:.4f}', m['loss'])} (½·MSE); GD-1 {gd:.4f}, zero predictor {zero:.4f} "
                       f"({zero_rel:+.0%}), ridge λ = 1e-3 {r['ridge_loss']:.4f} (beyond one layer)", **guards),
        finding("pred-diff", "predictions agree with GD-1: mean |ŷ_TF − ŷ_GD| / mean |ŷ_GD|", SRC,
                "0.021 at predictions O(0.6) (≈ 3.5%) in a re-implementation (reference/mesa.md §1.8 [M])",
                m["pred_diff"] / r["mean_abs_gd_pred"],
                at_most(PRED_DIFF_MAX, "reference/mesa.md §1.8 [M] measured 3.5%; 10% is a loose bound, ~3× that",
                        "%"), null=f"{NULL}; control: the zero predictor, 100%", **guards),
        finding("sens-cos", "sensitivities agree: cosine of ∂ŷ_TF/∂x_q and ∂ŷ_GD/∂x_q", SRC, "cos ≈ 1", m["sens_cos"],
                at_least(COSINE_MIN, "DESIGN.md §4 S1"), null=NULL, **guards),
        finding("weights-xblock", "W_KᵀW_Q x-block ∝ I: mean |off-diagonal| / mean |diagonal|", SRC,
                "0.004 / 0.507 in a re-implementation (reference/mesa.md §1.8 [M])", m["offdiag_ratio"],
                at_most(OFFDIAG_MAX, "reference/mesa.md §1.8 [M] measured 0.8%; 5% is a loose bound, ~6× that",
                        "%"), null=NULL,
                detail="largest |entry| of W_KᵀW_Q ÷ scale outside the x-block (shown, not judged): "
                       + ", ".join(f"{x:.3g}" for x in m.get("qk_rest", [])), **guards),
        finding("weights-scale", "scale × PW_V[y, y] equals −η*/N (relative error)", SRC,
                f"−η*/N = {target:.4f}; the weights match the construction", np.abs(m["ov_yy"] - target) / abs(target),
                at_most(WEIGHT_TOLERANCE, "DESIGN.md §4 S1", "%"), null=NULL,
                detail=per_seed("{:.4f}", m["ov_yy"]) + "; largest other |entry| of PW_V ÷ |PW_V[y, y]| (shown, "
                       "not judged): " + ", ".join(f"{x:.3g}" for x in m.get("ov_rest", [])), **guards),
        finding("interpolated", "the interpolated model (trained + construction)/2 has the trained loss "
                "(|L_mid / L_TF − 1|)", SRC, "same loss", np.abs(m["interp_loss"] / m["loss"] - 1.0),
                at_most(INTERP_TOLERANCE, "as gd1-loss: 2% (DESIGN.md §4 S1)", "%"), null=NULL,
                detail=per_seed("{:.4f}", m["interp_loss"]) + " (½·MSE of the interpolated model)", **guards),
    ]


def relative_gap(tf: np.ndarray, gd: np.ndarray) -> np.ndarray:
    """Per member, the largest |L_TF / L_GD − 1| over the scan. tf [points, members], gd [points]."""
    return np.max(np.abs(np.asarray(tf, float) / np.asarray(gd, float)[:, None] - 1.0), axis=0)


def transfer_rows(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    m_loss = np.asarray(r["members"]["loss"], float)
    guards = dict(learned=_learned(m_loss, r["zero_loss"]), converged=_converged(r.get("history")),
                  budget=BUDGET_ONE)
    rule = at_most(TRANSFER_GAP, "reference/mesa.md §1.6: the paper's TF and GD curves coincide; ≤ 10% apart", "%")
    ood = r["ood"]
    it = r["iterated"]
    return [
        finding("ood", "out of distribution (x range × α, α ∈ [0.5, 2]) TF and GD-1 degrade together: largest "
                "|L_TF / L_GD − 1| over α", SRC, "the OOD loss curves of TF and GD coincide",
                relative_gap(ood["tf"], ood["gd"]), rule, null=NULL,
                detail=f"GD-1 from {min(ood['gd']):.3g} to {max(ood['gd']):.3g} over α", **guards),
        finding("iterated", f"the trained layer iterated {cfg.iterations}× with damping {cfg.damping} tracks GD at "
                f"{cfg.damping}·η*: largest |L_TF / L_GD − 1| over depth", SRC,
                "tracks GD at 0.75·η (BLOG needed 0.70)", relative_gap(np.asarray(it["tf"], float).T, it["gd"]), rule,
                null=NULL, detail=f"GD at {cfg.damping}·η* from {it['gd'][0]:.3g} to {it['gd'][-1]:.3g}", **guards),
    ]


def depth_rows(deep: dict[str, Any] | None, zero: float) -> list[Claim]:
    """"Beats K-step GD" over all depths (per seed, the worst depth), "matches GD++" per depth (judged against the
    optimal GD++, with the authors'-style fit beside it), and "closer to GD++ than to K-step GD"."""
    if not deep:
        why = "no depths configured (Config.depths is empty)"
        return [not_run("beats-gd", "K-layer LSA beats K steps of GD", SRC_DEEP, "TF < GD-K", "< 0", why),
                not_run("closer-gdpp", "K-layer LSA is closer to GD++ than to K-step GD", SRC_DEEP, "cos", "> 0", why)]
    ks = deep["depths"]
    tf = np.asarray(deep["tf"], float)  # [K, seeds]
    gd, gdpp, adam = (np.asarray(deep[k], float) for k in ("gd", "gdpp", "gdpp_adam"))
    worst_loss = np.max(tf, axis=0)
    learned_all = _learned(worst_loss, zero)
    vs_gd = tf / gd[:, None] - 1.0
    rows = [finding(
        "beats-gd", "K-layer LSA beats K steps of GD (per seed, the largest L_TF / L_GD-K − 1 over K = "
        + ", ".join(map(str, ks)) + ")", SRC_DEEP, "TF < GD-K for every K", np.max(vs_gd, axis=0),
        below(0.0, "von Oswald et al. 2023 §4: trained stacks outperform plain GD", "%"),
        null=NULL, learned=learned_all, detail="per K, seeds: " + "; ".join(
            f"K={k}: " + ", ".join(f"{x:+.1%}" for x in v) for k, v in zip(ks, vs_gd)))]
    histories = deep.get("history") or [None] * len(ks)
    for i, k in enumerate(ks):
        rule = within(GDPP_MATCH, "DESIGN.md §4 S1", "%")
        conv = _converged(histories[i])
        learned = _learned(tf[i], zero)
        rel, rel_adam = tf[i] / gdpp[i] - 1.0, tf[i] / adam[i] - 1.0
        old = finding("old", "", "", "", rel_adam, rule, null="–", learned=learned, converged=conv)
        change = DefinitionChange(
            "GD++ baseline: (η, γ) fitted with Adam on sampled tasks (the authors' pre_train_gd_hps) → the optimum of "
            "GD++'s expected loss (L-BFGS, algorithms/fit.py)",
            "the paper's GD++ is the construction with learned (η, γ); Adam left it far from its optimum at K ≥ 3 "
            "(algorithms/fit.py), and issue 14 asks to judge against the optimum with the authors' fit shown",
            old.verdict, old.measured)
        rows.append(finding(
            f"matches-gdpp-k{k}", f"{k}-layer LSA matches GD++ with learned (η, γ) per layer: L_TF / L_GD++ − 1 "
            "(negative: better than GD++)", SRC_DEEP,
            f"TF ≈ GD++ (optimum here ½·MSE {gdpp[i]:.4f}; authors'-style Adam fit {adam[i]:.4f})", rel, rule,
            null=f"{NULL}; control: K-step GD, {gd[i] / gdpp[i] - 1:+.0%}", learned=learned, converged=conv,
            budget="; ".join(filter(None, (BUDGET_DEEP.get(k, ""), BUDGET_PAPER))), changes=(change,),
            detail=(f"{per_seed('{:+.1%}', rel)} against the optimum; against the authors'-style fit "
                    f"({adam[i]:.4f}): " + ", ".join(f"{x:+.1%}" for x in rel_adam)
                    + "; optimal GD++ η: " + ", ".join(f"{e:.3g}" for e in deep["gdpp_eta"][i]) + ", γ: "
                    + ", ".join(f"{g:.3g}" for g in deep["gdpp_gamma"][i]) + "; Adam-fitted η: "
                    + ", ".join(f"{e:.3g}" for e in deep["gdpp_adam_eta"][i]) + ", γ: "
                    + ", ".join(f"{g:.3g}" for g in deep["gdpp_adam_gamma"][i])
                    + (f"; {conv.text}" if conv else ""))))
    cos_pp, cos_gd = np.asarray(deep["cos_gdpp"], float), np.asarray(deep["cos_gd"], float)
    rows.append(finding(
        "closer-gdpp", "K-layer LSA computes a function closer to GD++ than to K-step GD: cosine of ∂ŷ/∂x_q with the "
        "GD++ construction minus that with the K-step GD construction (per seed, the smallest over K)", SRC_DEEP,
        "trained stacks align with GD++ (curvature correction) rather than plain GD", np.min(cos_pp - cos_gd, axis=0),
        above(0.0, "DESIGN.md §4 S1 ('deeper LSA learns GD++'); any positive margin — a weak reading (review "
                   "S1-C3), so the cosines themselves are in the detail"),
        null=NULL, learned=learned_all, detail="cos with GD++ / with GD-K per K (median seed): " + ", ".join(
            f"K={k}: {np.median(a):.4f} / {np.median(b):.4f}" for k, a, b in zip(ks, cos_pp, cos_gd))))
    return rows


def copy_row(copying: dict[str, Any] | None, zero: float) -> Claim:
    claim = ("interleaved tokens: layer 1 (softmax) copies y_i into x_i's token: sensitivity of its output at x_i "
             "to the next token over the largest of own / any other context token")
    paper = "the first layer learns to copy the neighbouring token (the induction-head link)"
    if not copying:
        return not_run("copy", claim, SRC_COPY, paper, f"≥ {COPY_DOMINANCE:g}", "copy_steps = 0")
    s = np.asarray(copying["sensitivity"], float)  # [seeds, (own, next, other)]
    ratio = s[:, 1] / np.maximum(s[:, 0], s[:, 2])
    return finding(
        "copy", claim, SRC_COPY, paper, ratio,
        at_least(COPY_DOMINANCE, "a head that copies reads mostly one token; 2× is our definition, fixed before "
                                 "the first run"),
        null=NULL, learned=_learned(copying["loss"], zero),
        detail="per seed (own, next, largest other): " + "; ".join(f"{a:.3g}, {b:.3g}, {c:.3g}" for a, b, c in s)
               + "; loss " + ", ".join(f"{x:.4f}" for x in copying["loss"]))


def nonlinear_row(nl: dict[str, Any] | None) -> Claim:
    """MLP + LSA against MLP + GD on sine regression: L_LSA / L_GD − 1 per seed pair, with the learned guard against
    the best context-free predictor and the convergence of both trainings."""
    claim = ("non-linear (sine) regression: an MLP feature map + 1 LSA layer, trained end to end, reaches the loss of "
             "'MLP + GD' (the same MLP trained under a fixed one-step-GD head): L_MLP+LSA / L_MLP+GD − 1 per seed")
    paper = "TF ≈ MLP + GD: the layer does one GD step on learned features (the loss curves coincide)"
    rule = within(NONLINEAR_MATCH, "the study's 'matches' band (GDPP_MATCH, DESIGN.md §4 S1); the paper prints no "
                                   "number", "%")
    if not nl:
        return not_run("nonlinear", claim, SRC_NONLINEAR, paper, rule.text, "nonlinear_steps = 0 (not configured)")
    m = {k: np.asarray(v, float) for k, v in nl["members"].items()}
    trivial = {"the zero predictor": nl["zero_loss"], "the context mean of y": nl["mean_loss"],
               "E[y | x_q] under the task prior (ignores the context)": nl["prior_loss"]}
    best_name = min(trivial, key=trivial.get)
    learned = Learned.beats(m["loss"], trivial[best_name], LEARNED_MARGIN, f"the best context-free predictor, "
                            f"{best_name}")
    conv_lsa, conv_gd = _converged(nl.get("history")), _converged(nl.get("gd_history"))
    conv = next((c for c in (conv_lsa, conv_gd) if c is not None and not c.converged), conv_lsa)
    rel = m["loss"] / m["gd_loss"] - 1.0
    steps = nl.get("steps", "?")
    return finding(
        "nonlinear", claim, SRC_NONLINEAR, paper, rel, rule,
        null=f"{NULL}; control with the mechanism removed: one GD step on the raw x (an LSA without the MLP) at its "
             f"optimal η, ½·MSE {nl['raw_gd_loss']:.4f} ({nl['raw_gd_loss'] / np.median(m['gd_loss']) - 1:+.0%} "
             "against the median MLP + GD)",
        learned=learned, converged=conv,
        budget="the paper preset (20k steps of each model at batch 2048, the authors' learning rates) would decide it",
        detail=(f"{per_seed('{:+.1%}', rel)}; ½·MSE MLP + LSA: " + ", ".join(f"{x:.4f}" for x in m["loss"])
                + "; MLP + GD (head fixed at η = " + f"{nl['gd_eta']:g}): " + ", ".join(f"{x:.4f}" for x in m["gd_loss"])
                + f"; zero predictor {nl['zero_loss']:.4f}, context mean {nl['mean_loss']:.4f}, E[y | x_q] "
                f"{nl['prior_loss']:.4f}, one GD step on raw x {nl['raw_gd_loss']:.4f}; agreement of the two models "
                "(shown, not judged): mean |Δŷ| / mean |ŷ_GD| " + ", ".join(f"{x:.2f}" for x in m["pred_diff"])
                + ", cosine of ∂ŷ/∂y_context " + ", ".join(f"{x:.3f}" for x in m["sens_cos"])
                + "; MLP + LSA: " + (conv_lsa.text if conv_lsa else "no history") + "; MLP + GD: "
                + (conv_gd.text if conv_gd else "no history") + f"; {steps} steps each"))


def check_rows(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    rows = []
    ref = REFERENCE_GD.get(cfg.x_half_width)
    deep = r.get("depth") or {}
    se = r.get("gd_loss_rel_std", float("nan")) * np.sqrt(1 / cfg.n_validation + 1 / REFERENCE_TASKS)
    bound = BASELINE_SIGMAS * float(se)
    src_ref = (f"{BASELINE_SIGMAS:g} combined standard errors ({bound:.1%}): this run's {cfg.n_validation} and the "
               f"reference's 10⁴ tasks; the number is the reference author's re-implementation [M], not the paper's")
    if ref is None:
        rows.append(not_run("gd1-reference", "GD-1 at η* reproduces the reference number", "reference/mesa.md §1.7",
                            "–", "–", f"no reference number for x_half_width = {cfg.x_half_width}", kind="check"))
    else:
        rows.append(check("gd1-reference", f"GD-1 at the optimal η reproduces the reference {ref[0]} (relative "
                          "difference)", "reference/mesa.md §1.7 [M]",
                          f"{ref[0]} at η ≈ {'6.0' if cfg.x_half_width == 0.5 else '1.5'}",
                          r["gd_loss"] / ref[0] - 1.0, within(bound, src_ref, "%"),
                          detail=f"measured {r['gd_loss']:.4f} at η* = {r['eta']:.3f}; the notebook's constant is "
                                 "0.2047 at U(±0.5) (reference/mesa.md §1.7)"))
        ks = [k for k in deep.get("depths", []) if k <= len(ref)]
        if ks:
            rel = [deep["gd"][deep["depths"].index(k)] / ref[k - 1] - 1.0 for k in ks]
            worst = max(rel, key=abs)
            rows.append(check("gdk-reference", "K-step GD at its line-searched η reproduces the reference numbers "
                              "(the largest relative difference over K)", "reference/mesa.md §1.7 [M]",
                              ", ".join(f"K={k}: {ref[k - 1]}" for k in ks), worst, within(bound, src_ref, "%"),
                              detail=", ".join(f"K={k}: {g:.4f} ({x:+.1%})" for k, g, x in
                                               zip(ks, [deep["gd"][deep["depths"].index(k)] for k in ks], rel))))
    rows.append(check("gd-lsa-construction", "the GD-LSA construction (constructions.gd_lsa) reproduces GD-1's "
                      "predictions (largest |Δŷ| / mean |ŷ_GD|)", "von Oswald et al. 2023 §3 (Prop. 1)",
                      "exact", r["construction_max_diff"], at_most(CONSTRUCTION_TOL, "float32 round-off")))
    if deep:
        diffs = deep["gdpp_construction_diff"]
        rows.append(check("gdpp-lsa-construction", "the GD++ LSA construction reproduces GD++'s predictions at every "
                          "K (largest |Δŷ| / mean |ŷ| over K)", "von Oswald et al. 2023 §4; reference/mesa.md §1.4",
                          "exact", max(diffs), at_most(CONSTRUCTION_TOL, "float32 round-off"),
                          detail=", ".join(f"K={k}: {x:.2g}" for k, x in zip(deep["depths"], diffs))))
        gdpp, adam = np.asarray(deep["gdpp"]), np.asarray(deep["gdpp_adam"])
        rows.append(check("gdpp-optimum", "the optimal GD++ fit (L-BFGS) is no worse than the authors'-style Adam "
                          "fit (largest L_opt / L_Adam − 1 over K)", "algorithms/fit.py; review S1-D2",
                          "Adam (20k steps): 0.105 / 0.055 / 0.041 / 0.036 for K = 2…5 (review S1-D2)",
                          float(np.max(gdpp / adam - 1.0)), at_most(0.0, "an optimum is no worse than any fit", "%"),
                          detail=", ".join(f"K={k}: {a:.4f} vs {b:.4f}" for k, a, b in
                                           zip(deep["depths"], gdpp, adam))))
    return rows
