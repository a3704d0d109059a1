"""Findings and checks of the mesa-dynamics study: thresholds and definitions (each with its source), and pure
functions from results to rows (studies/verdicts.py states the protocol: strict majority of seeds, learned and
converged guards, nulls attached by the runner).

Per-seed statistics index the part's seeds; a model's loss is the mean over positions of its per-position test loss
on the study's fixed test set. The trivial predictor is the zero predictor: W* is drawn afresh for every sequence,
so nothing learnable predicts s_{t+1} without the context, and 0 is the best context-free guess (½E‖s‖² ≈ 1.67).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab.studies.mesa_dynamics.models import parse
from mesalab.studies.verdicts import (
    Claim, Convergence, DefinitionChange, Learned, at_most, below, check, convergence, finding, least_converged,
    not_run, per_seed, within,
)

SRC = "von Oswald et al. 2023b"
UNTRAINED = "untrained models at initialisation (≈ the zero predictor)"

# The default model against the authors' sandbox notebook: 0.431 mean test loss at epoch 24 of 100 steps, i.e. 2,500
# steps at batch 256 of the 20k-step schedule (reference/mesa.md §2.5). "≈ 0.43": within 10% either side.
PAPER_DEFAULT_LOSS = 0.431
PAPER_DEFAULT_STEPS = 2500
DEFAULT_TOLERANCE = 0.10
# Learned guard: a seed learned when its loss is at most (1 − 0.10) × the zero predictor's. One GD step already beats
# the zero predictor by 44% and the authors' model at 2.5k steps by 74% (reference/mesa.md §2.5), while the untrained
# plateau sits within 0.1% of it (1.670 → 1.669 over the authors' first 300 steps): 10% separates the two.
LEARNED_MARGIN = 0.10
# "The test loss of a single-layer linear attention network converged to that of one step of gradient descent with
# an optimized learning rate and initial parameters" (reference/mesa.md §2.7): within 5% either side.
GD1_TOLERANCE = 0.05
# DESIGN.md §4 S2: the compressed 12-scalar form has the trained model's loss within 2%.
COMPRESSED_TOLERANCE = 0.02
# reference/mesa.md §2.5 [M]: least squares with all pairs (λ = 1e-3) has loss 0.0045 at t = 10; the authors'
# one-pair-fewer version 0.086 (their stored pickle). Our baseline must reproduce both within 30% (they are means
# over random systems).
LSQ_REFERENCE = {"all": 0.0045, "one_fewer": 0.086}
LSQ_POSITION = 10
LSQ_TOLERANCE = 0.30
# Identities: only float32 round-off may separate the two sides.
ETA_TERM_GAP = 1e-4
ACTING_GAP = 1e-4
# Learning in context: the loss at the last position at most half the loss at the first, for every model (the
# authors' 2-layer model goes from 1.677 to 0.273, ratio 0.16; reference/mesa.md §2.5).
IN_CONTEXT_RATIO = 0.5
# "The mesa layer approaches least squares" (reference/mesa.md §2.6; DESIGN.md §4 S2), fixed before any run: over
# the late positions t ≥ 2d (0-based, where least squares sits at its noise floor: 0.0009 at t = 20, §2.5), the
# mesa layer's mean loss is at most 2 × that of per-position least squares with all pairs seen so far (λ = 1e-3,
# the pairs a mesa layer sees at t). The authors' 2-layer linear model at 2.5k steps is ~200× there (§2.5 table).
LATE_FROM_D = 2
MESA_LSQ_FACTOR = 2.0
# "A single mesa layer beats deeper linear and softmax models" and "the softmax + mesa hybrid is best" (reference/
# mesa.md §2.6; DESIGN.md §4 S2): the ratio to the best rival's median seed below 1.
BEATS = 1.0


def learned(losses, zero: float) -> Learned:
    return Learned.beats(losses, zero, LEARNED_MARGIN, "the zero predictor")


def part_convergence(part: dict[str, Any]) -> Convergence | None:
    h = part.get("history")
    return None if not h else convergence(h["steps"], h["loss"], h.get("time"))


def group_convergence(parts: dict[str, dict[str, Any]]) -> tuple[Convergence | None, str]:
    """The convergence of a group of parts: the part that fell most over its last quarter stands for the group (it
    is converged only if every part is). None when any part has no history (untrained models)."""
    conv = {n: part_convergence(p) for n, p in parts.items()}
    if not conv or any(c is None for c in conv.values()):
        return None, ""
    worst = max(conv, key=lambda n: conv[n].drop)
    text = "; ".join(f"{n} fell {c.drop:.1%}" for n, c in conv.items())
    return least_converged(*conv.values()), f"last-quarter drops: {text} (the group is judged by {worst})"


def claims(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    b = r["baselines"]
    zero = float(np.mean(b["zero"]))
    rows = [default_loss(cfg, r, zero), *lsq_checks(cfg, r), in_context(cfg, r, zero), mesa_beats_stacks(cfg, r, zero),
            mesa_near_lsq(cfg, r, zero), hybrid_best(cfg, r, zero), *one_layer_rows(cfg, r, zero)]
    return rows


def default_loss(cfg: Any, r: dict[str, Any], zero: float) -> Claim:
    d = r["default"]
    rel = np.asarray(d["loss"], float) / PAPER_DEFAULT_LOSS - 1
    return finding(
        "default-loss", f"the default 2-layer, 4-head linear model after {cfg.default_steps:,} steps (batch "
        f"{cfg.default_batch_size}) reaches the authors' mean test loss: L / {PAPER_DEFAULT_LOSS} − 1",
        f"{SRC}; sandbox notebook (reference/mesa.md §2.5)",
        f"{PAPER_DEFAULT_LOSS} after {PAPER_DEFAULT_STEPS:,} steps at batch 256", rel,
        within(DEFAULT_TOLERANCE, "“≈ 0.43”: ±10% of the notebook's epoch-24 loss", unit="%"),
        null=f"{UNTRAINED}; control: the zero predictor, {zero:.3f} ({zero / PAPER_DEFAULT_LOSS - 1:+.0%})",
        learned=learned(d["loss"], zero),
        detail=per_seed("{:.4f}", d["loss"]) + (
            "" if (cfg.default_steps, cfg.default_batch_size) == (PAPER_DEFAULT_STEPS, 256) else
            f"; not the authors' budget ({PAPER_DEFAULT_STEPS:,} steps at batch 256), so not comparable"))


def lsq_checks(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    b, rows = r["baselines"], []
    t = min(LSQ_POSITION, cfg.seq_len - 1)
    for pairs, key in (("all", "lsq_all"), ("one_fewer", "lsq_one_fewer")):
        got, ref = float(b[key][t]), LSQ_REFERENCE[pairs]
        which = "all pairs so far" if pairs == "all" else "one pair fewer, the authors' code"
        rows.append(check(
            f"lsq-{pairs.replace('_', '-')}-t{LSQ_POSITION}",
            f"least squares (λ = {cfg.lsq_lambda:g}, {which}) at position t = {t} matches the reference: "
            "L / ref − 1",
            "reference/mesa.md §2.5", f"{ref} ({'[M], all pairs' if pairs == 'all' else 'the authors’ pickle'})",
            got / ref - 1, within(LSQ_TOLERANCE, "a mean over random systems: ±30%", unit="%"),
            detail=f"L = {got:.4g} against {ref}; mean over {cfg.n_test} test systems"
            + ("" if t == LSQ_POSITION else f"; at t = {t}, the last position of this scale's sequences")))
    return rows


def all_models(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"default linear-2": r["default"], "linear-1-masked": r["one_layer"], **r["compare"]}


def in_context(cfg: Any, r: dict[str, Any], zero: float) -> Claim:
    models = all_models(r)
    ratios = {n: np.asarray(p["curve"], float)[:, -1] / np.asarray(p["curve"], float)[:, 0] for n, p in models.items()}
    seeds = min(len(v) for v in ratios.values())
    worst = np.max(np.stack([v[:seeds] for v in ratios.values()]), axis=0)
    beats = np.stack([learned(p["loss"][:seeds], zero).per_seed for p in models.values()]).all(axis=0)
    guard = Learned(tuple(bool(x) for x in beats), f"every model's loss ≤ {1 - LEARNED_MARGIN:g} × {zero:.4g}, the "
                                                   "loss of the zero predictor")
    return finding(
        "in-context", "every trained model learns in context: loss at the last position / loss at the first "
        "(per seed, the largest over models)", f"{SRC}, per-position loss curves; reference/mesa.md §2.5",
        "per-position loss falls with context for every model (authors' 2-layer model: 1.677 → 0.273)", worst,
        at_most(IN_CONTEXT_RATIO, "half the first position's loss; the authors' model reaches 0.16"),
        null=f"{UNTRAINED}: a flat curve, ratio ≈ 1", learned=guard,
        detail="median seed per model: " + "; ".join(f"{n}: {np.median(v):.3f}" for n, v in ratios.items()))


def rivals_of(cfg: Any, r: dict[str, Any], mesa: str) -> dict[str, dict[str, Any]]:
    """Deeper linear and softmax attention-only models of the group with at least the mesa model's parameters, and
    the default linear-2: it trains longer at a larger batch than the group, which only makes the rival stronger."""
    group = r["compare"]
    rivals = {n: p for n, p in group.items() if parse(n)[0] in ("linear", "softmax")
              and p["params"] >= group[mesa]["params"]}
    rivals[f"default linear-2 ({cfg.default_steps:,} steps, batch {cfg.default_batch_size})"] = r["default"]
    return rivals


def group_budget(cfg: Any) -> str:
    return (f"The group trained {cfg.compare_steps:,} steps at batch {cfg.compare_batch_size}; a schedule long enough "
            "to converge decides it (`--set compare_steps=…`; the paper preset: 20,000 steps at batch 256).")


def mesa_beats_stacks(cfg: Any, r: dict[str, Any], zero: float) -> Claim:
    cid, group = "mesa-beats-stacks", r["compare"]
    claim = ("a single mesa layer beats deeper linear and softmax attention-only models with at least as many "
             "parameters: L_mesa / L_best rival (its median seed)")
    paper = "mesa-1 below the linear and softmax stacks (reference/mesa.md §2.6; DESIGN.md §4 S2)"
    rule = below(BEATS, "“beats”: a lower loss than the best rival")
    mesa = next((n for n in group if parse(n)[0] == "mesa" and parse(n)[1] == 1), None)
    if mesa is None:
        return not_run(cid, claim, SRC, paper, rule.text, "needs 'mesa-1' in `models`", null=UNTRAINED)
    rivals = rivals_of(cfg, r, mesa)
    medians = {n: float(np.median(p["loss"])) for n, p in rivals.items()}
    best = min(medians, key=medians.get)
    ratio = np.asarray(group[mesa]["loss"], float) / medians[best]
    conv, conv_text = group_convergence({n: p for n, p in group.items() if n == mesa or n in rivals})
    in_group = {n: m for n, m in medians.items() if n in group}
    old = (float(np.median(group[mesa]["loss"])) / min(in_group.values())) if in_group else float("nan")
    change = DefinitionChange(
        "rivals now include the better-trained default linear-2; judged per mesa seed against the best rival's median "
        "seed, with the learned and convergence guards (was: median mesa / median best rival of the group < 1)",
        "review S2-C5: at cpu the group trains 600 steps at batch 64, so without a convergence guard the verdict "
        "measured training speed; the paper compares models trained to the end of a 20k-step schedule",
        "PASS" if old < BEATS else "FAIL", old)
    return finding(
        cid, claim, SRC, paper, ratio, rule, null=f"{UNTRAINED}: every model ≈ the zero predictor, ratio ≈ 1",
        learned=learned(group[mesa]["loss"], zero), converged=conv, budget=group_budget(cfg),
        detail=f"best rival: {best}; " + "; ".join(f"{n} ({p['params']:,} params): {medians[n]:.4f}"
                                                   for n, p in rivals.items())
        + f"; {mesa} ({group[mesa]['params']:,} params): {np.median(group[mesa]['loss']):.4f}. {conv_text}",
        changes=(change,))


def late(curve, d: int) -> np.ndarray:
    """Mean loss over the late positions t ≥ 2d (the last position when sequences are shorter) of curves [..., T]."""
    c = np.asarray(curve, float)
    return c[..., min(LATE_FROM_D * d, c.shape[-1] - 1):].mean(-1)


def ridge_text(ridge) -> str:
    """The mesa layer's learned λ (models/attention.py: λ = exp(log_ridge)), median over layers and heads per seed."""
    if ridge is None:
        return "–"
    lam = np.moveaxis(np.asarray(ridge, float), 1, 0)  # [mesa layer, seed, head] → [seed, mesa layer, head]
    return ", ".join(f"{x:.3g}" for x in np.median(lam.reshape(lam.shape[0], -1), axis=1))


def mesa_near_lsq(cfg: Any, r: dict[str, Any], zero: float) -> Claim:
    cid, group = "mesa-near-lsq", r["compare"]
    start = min(LATE_FROM_D * cfg.d, cfg.seq_len - 1)
    claim = (f"the mesa layer approaches per-position least squares: its mean loss over positions t ≥ {start} / that "
             f"of least squares (all pairs, λ = {cfg.lsq_lambda:g})")
    paper = "the mesa layer's per-position loss close to least squares' (reference/mesa.md §2.6)"
    rule = at_most(MESA_LSQ_FACTOR, "within a factor 2 of least squares at its noise floor; fixed before the run")
    mesa = next((n for n in group if parse(n)[0] == "mesa" and parse(n)[1] == 1), None)
    if mesa is None:
        return not_run(cid, claim, SRC, paper, rule.text, "needs 'mesa-1' in `models`", null=UNTRAINED)
    lsq = float(late(r["baselines"]["lsq_all"], cfg.d))
    ratio = late(group[mesa]["curve"], cfg.d) / lsq
    control = float(np.median(late(r["default"]["curve"], cfg.d))) / lsq
    conv = part_convergence(group[mesa])
    return finding(
        cid, claim, SRC, paper, ratio, rule,
        null=f"{UNTRAINED}; control with the solve removed: the default linear-2, ratio {control:.3g} (median seed)",
        learned=learned(group[mesa]["loss"], zero), converged=conv,
        budget=f"{mesa} trained {cfg.compare_steps:,} steps at batch {cfg.compare_batch_size}; a longer schedule "
               "decides it (the paper preset: 20,000 at batch 256).",
        detail=f"least squares over t ≥ {start}: {lsq:.4g}; {mesa} per seed: "
        + ", ".join(f"{x:.4g}" for x in late(group[mesa]["curve"], cfg.d))
        + f"; learned λ (median over heads) per seed: {ridge_text(r.get('mesa_ridge', {}).get(mesa))}"
        + (f". {mesa}: {conv.text}; its schedule decays to {cfg.end_lr:g} at step {cfg.compare_steps:,}" if conv
           else ""))


def hybrid_best(cfg: Any, r: dict[str, Any], zero: float) -> Claim:
    cid, group = "hybrid-best", r["compare"]
    claim = "the softmax + mesa hybrid is the best model of the group: L_hybrid / L_best other model (its median seed)"
    paper = ("“a hybrid architecture combining one softmax attention layer and one mesa-layer achieved the best "
             "performance among all models tested” (reference/mesa.md §2.6)")
    rule = below(BEATS, "“best”: a lower loss than every other model")
    if "softmax+mesa" not in group or len(group) < 2:
        return not_run(cid, claim, SRC, paper, rule.text, "needs 'softmax+mesa' and another model in `models`",
                       null=UNTRAINED)
    others = {n: p for n, p in group.items() if n != "softmax+mesa"}
    others[f"default linear-2 ({cfg.default_steps:,} steps, batch {cfg.default_batch_size})"] = r["default"]
    medians = {n: float(np.median(p["loss"])) for n, p in others.items()}
    best = min(medians, key=medians.get)
    hyb = group["softmax+mesa"]
    conv, conv_text = group_convergence(group)
    mesa = next((n for n in group if parse(n)[0] == "mesa"), None)
    control = (f"; control with the softmax layer removed: {mesa}, {medians[mesa]:.4f}" if mesa else "")
    return finding(
        cid, claim, SRC, paper, np.asarray(hyb["loss"], float) / medians[best], rule,
        null=f"{UNTRAINED}: every model ≈ the zero predictor, ratio ≈ 1{control}",
        learned=learned(hyb["loss"], zero), converged=conv, budget=group_budget(cfg),
        detail=f"best other: {best}; softmax+mesa median {np.median(hyb['loss']):.4f}; "
        + "; ".join(f"{n}: {m:.4f}" for n, m in medians.items()) + f". {conv_text}")


def one_layer_rows(cfg: Any, r: dict[str, Any], zero: float) -> list[Claim]:
    one, b = r["one_layer"], r["baselines"]
    a = one["analysis"]
    loss = np.asarray(one["loss"], float)
    gd1 = float(np.mean(b["gd1_init"]))
    ov = np.abs(np.asarray(a["scalars_ov"], float))
    n = a.get("compressed_params", 12)
    conv = part_convergence(one)
    rows = [finding(
        "one-layer-gd1", "the 1-layer linear model (2 heads, masked tokens) matches one GD step with learned η and "
        "W_0: L_TF / L_GD-1 − 1", SRC + " (reference/mesa.md §2.7)",
        "its loss converged to one GD step's with optimised learning rate and initial parameters", loss / gd1 - 1,
        within(GD1_TOLERANCE, "“converged to that of one step of GD”: ±5%", unit="%"),
        null=f"{UNTRAINED}; control: GD-1 from W_0 = 0, {np.mean(b['gd1']):.4f} ({np.mean(b['gd1']) / gd1 - 1:+.0%})",
        learned=learned(loss, zero), converged=conv,
        budget=f"it trained {cfg.one_layer_steps:,} steps at batch {cfg.one_layer_batch_size} of the "
               f"{cfg.schedule_steps:,}-step schedule; more steps (`--set one_layer_steps=…`) decide it.",
        detail=per_seed("{:+.2%}", loss / gd1 - 1) + f"; GD-1 mean loss {gd1:.4f} at η = {b['gd1_init_eta']:.4f} "
        f"with W_0 fitted (‖W_0‖ = {b['gd1_init_w0_norm']:.3f}); negative: better than GD-1. η-term rates "
        + ", ".join(f"{x:.4f}" for x in a["eta_term"]) + f" against the best GD rate {b['gd1_eta']:.4f}; median |p₂| "
        f"(value s_{{i−1}}) = {np.median(ov[..., 1]):.4f} vs median |p₁| = {np.median(ov[..., 0]):.4f}"
        + (f"; {conv.text}" if conv else ""))]
    rel_c = np.abs(np.asarray(a["compressed_loss"], float) / loss - 1)
    rows.append(finding(
        "compressed-loss", f"its compressed form ({n} acting scalars: block-diagonal means of W_KᵀW_Q and PW_V) has "
        "the trained loss: |L_compressed / L_TF − 1|", SRC + " (reference/mesa.md §2.7)",
        "same loss within 2% (DESIGN.md §4 S2)", rel_c,
        at_most(COMPRESSED_TOLERANCE, "DESIGN.md §4 S2: within 2%", unit="%"),
        null=f"{UNTRAINED}: both sides the zero predictor, |Δ| ≈ 0, which the learned guard rejects",
        learned=learned(loss, zero),
        detail=per_seed("{:.2%}", rel_c) + "; compressed losses "
        + ", ".join(f"{x:.4f}" for x in a["compressed_loss"]) + f"; {n} scalars act (of "
        f"{a.get('compressed_params_all_slots', '?')} over all slots; token slots {a.get('input_slots')}, read-out "
        f"slots {a.get('output_slots')})"))
    if "acting_loss" in a:
        rel_a = np.abs(np.asarray(a["acting_loss"], float) / np.asarray(a["compressed_loss"], float) - 1)
        rows.append(check(
            "acting-scalars", f"the compressed model rebuilt from its {n} acting scalars alone has the full compressed "
            "model's loss: |L_acting / L_compressed − 1| (the parameter count is right)", "analysis/compress.py",
            f"{n} scalars (reference/mesa.md §2.7: 8 of W_KᵀW_Q, 4 of PW_V for 2 heads)", rel_a,
            at_most(ACTING_GAP, "an identity: the other scalars multiply zero slots or are not read out"),
            need=len(rel_a), detail=per_seed("{:.1e}", rel_a)))
    gap = np.asarray(a["eta_term_gap"], float)
    rows.append(check(
        "eta-term-gd", "its η-terms alone (key s_{i−1}, query s_t, value s_i) are one GD step from W_0 = 0 at rate "
        "η = Σ_h PW_V·W_KᵀW_Q: max |ŷ_η-terms − ŷ_GD(η)| / max |ŷ_GD(η)|", "reference/mesa.md §2.7",
        "the η-term is exactly one GD step", gap,
        at_most(ETA_TERM_GAP, "an identity (tests/test_compress.py): float32 round-off only"), need=len(gap),
        detail=per_seed("{:.1e}", gap) + "; η per seed: " + ", ".join(f"{x:.4f}" for x in a["eta_term"])
        + f" (best GD-1 η = {b['gd1_eta']:.4f})"))
    return rows
