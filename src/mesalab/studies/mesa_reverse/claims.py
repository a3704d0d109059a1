"""The rows of S3 (von Oswald et al. 2023b §4–5): thresholds and definitions, each with its source, fixed before
looking at results; pure functions from results to rows (studies/verdicts.py states the protocol).

Findings about the trained models (probes, CompressedAlg-d, the retrained interpolation, the mesa dataset, few-shot
repurposing) first ask that the model learned (LEARNED_MARGIN); those about the end of training (CompressedAlg-d,
the retrained interpolation, few-shot) ask that training converged (verdicts.convergence). The Neumann / Newton–Schulz
comparison is a check: a deterministic property of hand-built constructions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab.studies.verdicts import (
    Claim, Convergence, DefinitionChange, Learned, Rule, at_least, at_most, check, convergence, finding,
    least_converged, not_run, per_seed, within,
)

SRC = "von Oswald et al. 2023b"
NULL = "untrained models at initialisation (the same pipeline)"
BUDGET = ("`--scale paper` trains the stacks 20k steps at batch 256 (the paper's budget; a GPU setting); at `cpu` "
          "they train 1k steps at batch 64")

# Learned guard. The trivial predictor of s_{t+1} is 0 (loss ½E‖s‖² ≈ 1.67 at d = 10, the plateau every model starts
# on). A model that learned the in-context algorithm is far below it: the authors' 2-layer sandbox model is at 0.431
# = 26% of it after 2.5k steps (reference/mesa.md §2.5). 25% below the zero predictor rules out the plateau, where
# both sides of a comparison are ≈ the zero predictor (review S3-C1), and still counts models that are learning.
LEARNED_MARGIN = 0.25
# Probes (§4, Fig. 3: "linear decoders could predict next-token targets and preconditioned inputs with increasing
# accuracy as a function of layer depth and context length"). Late positions: the second half of the sequence.
# Depth rule, fixed before looking at any result: at late positions, the last layer's R² exceeds the first layer's
# by at least DEPTH_GAIN_MIN, and no layer's R² is below the previous layer's by more than DEPTH_FALL_TOL. 0.05 is a
# rise clearly above the held-out probes' noise (R² of 1024 sequences averaged over 25 positions); 0.02 lets a layer
# dip within that noise without calling the curve non-monotone.
DEPTH_GAIN_MIN = 0.05
DEPTH_FALL_TOL = 0.02
# Context: the last layer's R² at late positions minus its R² in an early window, at least CONTEXT_GAIN_MIN (the
# same "clearly above noise" as the depth gain).
CONTEXT_GAIN_MIN = 0.05
# Early windows (0-based positions; at position t the earlier states are S_{<t} = t states).
# s_{t+1}: positions 1–5, the first tokens of the context, as first defined (the paper's context axis starts there).
# Preconditioned: d + 1 … d + 5, just after S_{<t} has full rank (t ≥ d). Before that (S_{<t}S_{<t}ᵀ + λI)⁻¹ s_t is
# ≈ the part of s_t off the span of earlier states times 1/λ (at t = 0 exactly s_t/λ): a linear function of the token
# that any layer decodes, not the preconditioned input of a mesa-optimizer. Changed after a failing run (see
# CONTEXT_CHANGE); both windows are computed from the same R² arrays.
S_NEXT_EARLY = (1, 6)
def precond_early(d: int) -> tuple[int, int]:  # noqa: E302
    return d + 1, d + 6


# CompressedAlg-d (§4; reference/mesa.md §2.7): "a compressed expression … using only 0.5% of the parameters"
# describes a 6-layer model; DESIGN.md §4 S3 reads "describes" as a loss within 5%, for d ≥ 4 layers, with ≤ 1% of
# the parameters.
COMPRESSED_TOLERANCE = 0.05
COMPRESSED_PARAM_SHARE = 0.01
COMPRESSED_MIN_DEPTH = 4
# The retrained interpolation ("interpolation between the actual transformer and RevAlg-d weights with almost no
# loss"): the fresh model with frozen compressed halves ends at most 5% above the trained model (same tolerance).
RETRAINED_TOLERANCE = 0.05
# Mesa dataset (§4: "early self-attention layers build internal training datasets … by grouping and copying tokens").
COPY_R2 = 0.9  # DESIGN.md §4 S3: s_{t−1} decodable from layer 1 with R² > 0.9
# Layer 1 reads the previous token "far more" than older ones: an order of magnitude above an older token's mean
# sensitivity. Uniform attention gives a ratio ≈ 1; a head with half its attention on t − 1 gives ≈ 20 at t = 25.
PREVIOUS_OVER_OTHER = 10.0
# Preconditioning constructions (reference/mesa.md §2.11): the error both must reach, and "far fewer layers":
# squaring needs at most a third of the term-by-term depth (log log vs log; at κ ≈ 60 and ε = 1e-3 ≈ 12 / 400).
TARGET_ERROR = 1e-3
DEPTH_RATIO = 1 / 3
# Few-shot (§5: the learned optimizer "can be repurposed" for supervised few-shot regression; a tuned EOS token and
# prompt "substantially improve" it, reference/mesa.md §2.9, seed 002). Statistic: the fraction of the gap between
# the plain format's loss and least squares' (λ = 1e-3, the authors' baseline) that tuning closes, mean over example
# positions. "Substantially, toward least squares" read as at least half the gap, fixed before looking.
FEWSHOT_GAP_CLOSED = 0.5


def values(fmt: str, v) -> str:
    """Every seed's value, formatted (for a row's detail)."""
    return ", ".join(fmt.format(x) for x in v)


def learned(losses, zero: float) -> Learned:
    return Learned.beats(losses, zero, LEARNED_MARGIN, "the zero predictor")


def history_convergence(h: dict[str, Any] | None) -> Convergence | None:
    return None if not h else convergence(h["steps"], h["test_loss"], h.get("time"))


def verdict_of(values, rule: Rule, lrn: Learned | None) -> tuple[str, float | None]:
    """Verdict and judged value of `values` under `rule` (for the old definition of a row, on the same run)."""
    row = finding("old", "", "", "", values, rule, null="–", learned=lrn)
    return row.verdict, row.measured


def claims(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    zero = r["zero_loss"]
    rows = probe_rows(cfg, r["deep"][-1], zero)
    rows += compressed_rows(r["deep"], zero)
    rows += retrained_rows(r["deep"][-1], zero)
    rows += mesa_dataset_rows(r["raw"], zero)
    rows.append(neumann_row(r["neumann"]))
    rows += fewshot_rows(r["deep"][-1], zero)
    return rows


def depth_rule(r2_layers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """r2_layers [seed, layer] (layers 1 … L at late positions) -> (margin, gain, largest fall) per seed, margin =
    min(gain − DEPTH_GAIN_MIN, DEPTH_FALL_TOL − largest fall): ≥ 0 exactly when the depth rule holds."""
    gain = r2_layers[:, -1] - r2_layers[:, 0]
    fall = np.max(-np.diff(r2_layers, axis=1), axis=1, initial=0.0)
    return np.minimum(gain - DEPTH_GAIN_MIN, DEPTH_FALL_TOL - fall), gain, fall


def probe_rows(cfg: Any, top: dict[str, Any], zero: float) -> list[Claim]:
    rows: list[Claim] = []
    late = slice(cfg.seq_len // 2, None)
    lrn = learned(top["loss"], zero)
    layers = top["layers"]
    for target, label, early, other in (
            ("s_next", "s_{t+1}", S_NEXT_EARLY, precond_early(cfg.d)),
            ("preconditioned", "(S_{<t}S_{<t}ᵀ + λI)⁻¹ s_t", precond_early(cfg.d), S_NEXT_EARLY)):
        r2 = np.asarray([p[target] for p in top["probes"]], float)  # [seed, site, T]; site 0 = the embedding
        at_late = r2[:, :, late].mean(-1)  # [seed, site]
        margin, gain, fall = depth_rule(at_late[:, 1:])
        rule = at_least(0.0, f"rule fixed in advance: last − first layer ≥ {DEPTH_GAIN_MIN}, no layer-to-layer fall "
                             f"> {DEPTH_FALL_TOL} (claims.py)")
        old_verdict = "PASS" if np.median(gain) > 0 else "FAIL"
        rows.append(finding(
            f"probe-depth-{target}",
            f"probe R² for {label} rises with depth ({layers}-layer model, held-out R² at 0-based positions ≥ "
            f"{cfg.seq_len // 2}): margin = min(last − first layer − {DEPTH_GAIN_MIN}, {DEPTH_FALL_TOL} − largest "
            "fall from one layer to the next)", f"{SRC} §4, Fig. 3",
            "decodability increases with layer depth", margin, rule, null=NULL, learned=lrn,
            detail=(per_seed("{:+.3f}", margin) + "; last − first layer " + values("{:+.3f}", gain)
                    + "; largest fall " + values("{:.3f}", fall) + "; R² embed, layer 1 … L (median over seeds): "
                    + ", ".join(f"{x:.3f}" for x in np.median(at_late, 0))),
            changes=[DefinitionChange(
                "last layer minus first layer > 0 (median seed, no learned guard) → the depth rule",
                "the paper's probes rise across layers (Fig. 3), not only from the first to the last; any positive "
                "gain passed, monotonicity was not checked (review S3-C3). The rule was fixed before looking.",
                old_verdict, float(np.median(gain)))]))

        def context_gain(window, site=-1):
            return r2[:, site, late].mean(-1) - r2[:, site, window[0]:window[1]].mean(-1)

        gain_c, gain_other = context_gain(early), context_gain(other)
        rule = at_least(CONTEXT_GAIN_MIN, "claims.py: clearly above held-out probe noise")
        old_verdict, old_value = verdict_of(gain_other, rule, lrn)
        if target == "preconditioned":
            change = DefinitionChange(
                f"early window: 0-based positions {other[0]}–{other[1] - 1} → {early[0]}–{early[1] - 1} (d + 1 … "
                "d + 5), changed after a failing run",
                "before S_{<t} has full rank the target is ≈ the part of s_t off the span of earlier states times 1/λ "
                "(exactly s_t/λ at t = 0), a linear function of the token that any layer decodes; the paper's claim is "
                "about the preconditioned input, which exists once S_{<t}S_{<t}ᵀ is full rank. Just past full rank "
                "the target is worst conditioned, so part of the rise may be conditioning alone: the detail gives the "
                "embedding's (the token's) own gain. The change was first applied to the s_{t+1} probe too, where "
                "this does not hold; that row keeps positions 1–5.",
                old_verdict, old_value)
        else:
            change = DefinitionChange(
                f"early window: 0-based positions {early[0]}–{early[1] - 1} (as first defined) → {other[0]}–"
                f"{other[1] - 1} after a failing run of the preconditioned row → {early[0]}–{early[1] - 1} again",
                "the full-rank argument concerns only the preconditioned target; s_{t+1} has no 1/λ regime and the "
                "paper's context axis starts at the first token, so the first definition stands",
                old_verdict, old_value)
        rows.append(finding(
            f"probe-context-{target}",
            f"probe R² for {label} rises with context: last layer, mean R² at 0-based positions ≥ {cfg.seq_len // 2} "
            f"minus positions {early[0]}–{early[1] - 1}", f"{SRC} §4, Fig. 3",
            "decodability increases with context length", gain_c, rule,
            null=NULL + "; control: the same gain probed from the embedding (the token alone)", learned=lrn,
            detail=(per_seed("{:+.3f}", gain_c) + "; the embedding's gain (token alone) "
                    + values("{:+.3f}", context_gain(early, 0))),
            changes=[change]))
    return rows


def compressed_rows(deep: list[dict[str, Any]], zero: float) -> list[Claim]:
    claim = "CompressedAlg-d (16 + 16 block scalars per head) has the trained loss: |L_compressed / L_trained − 1|"
    paper = "describes the trained model using 0.5% of the parameters (6 layers)"
    rel = {p["layers"]: np.abs(np.asarray(p["compressed_loss"], float) / np.asarray(p["loss"], float) - 1)
           for p in deep}
    shallow = "; ".join(f"{k} layers: " + values("{:.2%}", v) for k, v in rel.items() if k < COMPRESSED_MIN_DEPTH)
    parts = [p for p in deep if p["layers"] >= COMPRESSED_MIN_DEPTH]
    if not parts:
        why = f"the finding is for ≥ {COMPRESSED_MIN_DEPTH} layers; this scale trains {[p['layers'] for p in deep]}"
        return [not_run("compressed", claim, f"{SRC} §4", paper, f"≤ {COMPRESSED_TOLERANCE:.0%}",
                        why + (f" ({shallow})" if shallow else ""), null=NULL),
                not_run("compressed-share", "CompressedAlg-d uses ≤ 1% of the trained model's parameters",
                        f"{SRC} §4", paper, f"≤ {COMPRESSED_PARAM_SHARE:.0%}", why, kind="check")]
    rows = []
    for part in parts:
        layers, share = part["layers"], part["compressed_params"] / part["params"]
        v = rel[layers]
        lrn = learned(part["loss"], zero)
        zero_rel = np.abs(zero / np.asarray(part["loss"], float) - 1)
        rows.append(finding(
            f"compressed-{layers}", f"{claim}, {layers} layers", f"{SRC} §4", paper, v,
            within(COMPRESSED_TOLERANCE, "DESIGN.md §4 S3", "%"),
            null=NULL + "; control: the zero predictor in place of the compressed model", learned=lrn,
            converged=history_convergence(part.get("history")), budget=BUDGET,
            detail=(per_seed("{:.2%}", v) + "; the zero predictor's |L_0 / L_trained − 1| "
                    + values("{:.0%}", zero_rel) + (f"; shallower, for reference: {shallow}" if shallow else "")),
            changes=[DefinitionChange(
                "no learned guard → the trained model must first beat the zero predictor by 25%",
                "untrained models pass with |Δ| = 0, both sides the zero predictor (review S3-C1); the paper "
                "compresses trained models", "PASS" if np.median(v) <= COMPRESSED_TOLERANCE else "FAIL",
                float(np.median(v)))]))
        rows.append(check(
            f"compressed-share-{layers}", f"CompressedAlg-{layers} uses few parameters: {part['compressed_params']} "
            f"scalars / {part['params']} parameters (architecture)", f"{SRC} §4", paper, share,
            at_most(COMPRESSED_PARAM_SHARE, "DESIGN.md §4 S3", "%")))
    return rows


def retrained_rows(top: dict[str, Any], zero: float) -> list[Claim]:
    if "retrained" not in top:
        return []
    re = top["retrained"]
    rel = np.asarray(re["loss"], float) / np.asarray(top["loss"], float) - 1
    return [finding(
        "retrained-interpolation",
        f"a fresh {top['layers']}-layer model whose heads average their own products with the frozen CompressedAlg "
        "products trains to the trained model's loss with the same budget: L_retrained / L_trained − 1", f"{SRC} §4",
        "interpolation between the transformer and RevAlg-d with almost no loss", rel,
        at_most(RETRAINED_TOLERANCE, "the CompressedAlg-d tolerance, DESIGN.md §4 S3", "%"), null=NULL,
        learned=learned(top["loss"], zero),
        converged=least_converged(history_convergence(top.get("history")), history_convergence(re)), budget=BUDGET,
        detail=(per_seed("{:+.2%}", rel) + "; losses retrained / trained / CompressedAlg per seed: "
                + "; ".join(f"{a:.3f} / {b:.3f} / {c:.3f}" for a, b, c in
                            zip(re["loss"], top["loss"], top["compressed_loss"]))),
        changes=[DefinitionChange(
            "no learned guard → the trained model must first beat the zero predictor by 25%",
            "two plateaued models match (review S3-C1)", "PASS" if np.median(rel) <= RETRAINED_TOLERANCE else "FAIL",
            float(np.median(rel)))])]


def mesa_dataset_rows(raw: dict[str, Any], zero: float) -> list[Claim]:
    lrn = learned(raw["loss"], zero)
    r2_prev = np.asarray([np.mean(np.asarray(s["s_t-1"], float)[1:]) for s in raw["r2"]])
    embed = np.asarray([np.mean(np.asarray(s["s_t-1"], float)[1:]) for s in raw["r2_embed"]])
    older = "; ".join(f"s_{{t−{k}}} " + ", ".join(f"{np.mean(np.asarray(s[f's_t-{k}'], float)[k:]):.3f}"
                                                 for s in raw["r2"]) for k in (2, 3))
    sens = np.asarray(raw["sensitivity"], float).reshape(-1, 3)
    ratio = sens[:, 1] / sens[:, 2]
    return [
        finding("mesa-dataset-copy",
                f"mesa dataset: s_{{t−1}} is decodable from layer 1 of the raw-token model ({raw['model']}): held-out "
                "R², mean over positions ≥ 1", f"{SRC} §4", "layer 1 copies the previous token", r2_prev,
                Rule(">", COPY_R2, "DESIGN.md §4 S3"),
                null=NULL + "; control: the same probe from the embedding (the token alone)", learned=lrn,
                detail=per_seed("{:.3f}", r2_prev) + "; from the embedding " + values("{:.3f}", embed)
                + "; older states from layer 1: " + older),
        finding("mesa-dataset-previous",
                f"mesa dataset: layer 1 of {raw['model']} reads the previous token far more than older ones: "
                "sensitivity ‖∂ layer-1 output / ∂ s_{t−1}‖ over the mean for older tokens", f"{SRC} §4",
                "early layers group each token with its predecessor", ratio,
                at_least(PREVIOUS_OVER_OTHER, "claims.py: an order of magnitude, fixed in advance"),
                null=NULL + " (uniform attention gives ≈ 1)", learned=lrn,
                detail=per_seed("{:.3g}", ratio) + "; sensitivity own / previous / older per seed: "
                + "; ".join(" / ".join(f"{x:.3g}" for x in s) for s in sens)),
    ]


def neumann_row(n: dict[str, Any]) -> Claim:
    depths = np.asarray(n["depths"])
    needed = []
    for errs_n, errs_s in zip(n["neumann"], n["newton"]):
        hit_n = depths[np.asarray(errs_n) <= TARGET_ERROR]
        hit_s = depths[np.asarray(errs_s) <= TARGET_ERROR]
        needed.append((int(hit_s[0]) if hit_s.size else None, int(hit_n[0]) if hit_n.size else None))
    # Where term by term never reaches the target, its depth is above the largest one tried; where squaring never
    # does, the ratio is undefined (nan: the check fails).
    ratios = [s / (t if t is not None else depths.max() + 1) if s is not None else np.nan for s, t in needed]
    return check(
        "neumann-depth",
        f"squaring (Newton–Schulz LSA) reaches error {TARGET_ERROR:g} with far fewer layers than the term-by-term "
        "Neumann LSA on the task's Gram matrices: largest depth ratio over prefix lengths", f"{SRC}; reference/mesa.md "
        "§2.11", "depth O(log log 1/ε) instead of O(κ log 1/ε)", max(ratios) if not np.isnan(ratios).any() else np.nan,
        at_most(DEPTH_RATIO, "claims.py: log log against log depth"),
        detail="; ".join(f"t = {p} (κ ≈ {k:.3g}): squaring {s if s is not None else f'> {depths.max()}'} layers, "
                         f"term by term {t if t is not None else f'> {depths.max()}'}"
                         for p, k, (s, t) in zip(n["positions"], n["kappa"], needed)))


def fewshot_rows(top: dict[str, Any], zero: float) -> list[Claim]:
    fs = top.get("fewshot") or []
    if not fs:
        return []
    mean = {k: np.asarray([np.mean(f[k]) for f in fs], float) for k in ("plain", "eos_untuned", "eos", "prefix")}
    lsq = float(np.mean(top["fewshot_lsq"]))
    gap = mean["plain"] - lsq

    def closed(key):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(gap > 0, (mean["plain"] - mean[key]) / gap, np.nan)

    lrn = learned(top["loss"], zero)
    conv = history_convergence(top.get("history"))
    rule = at_least(FEWSHOT_GAP_CLOSED, "claims.py: §5 'substantially', toward least squares")
    losses = ("; mean loss per seed plain / separator untuned / EOS / EOS + prefix: "
              + "; ".join(" / ".join(f"{mean[k][i]:.3f}" for k in ("plain", "eos_untuned", "eos", "prefix"))
                          for i in range(len(fs)))
              + f"; least squares {lsq:.3f}, zero predictor {top['fewshot_zero']:.3f}")
    confound = ("Confound: the plain format has nothing to tune, so EOS-tuned against plain mixes the separator "
                "format with tuning; control: the same separator untuned closes ")
    eos, prefix, untuned = closed("eos"), closed("prefix"), closed("eos_untuned")
    old = np.asarray(mean["eos"]) / mean["plain"] - 1
    return [
        finding("fewshot-eos",
                f"few-shot regression with the frozen {top['layers']}-layer dynamics model: a tuned EOS token closes "
                "the gap between the plain [x, y] format and least squares: (L_plain − L_eos) / (L_plain − L_lsq)",
                f"{SRC} §5", "EOS tuning improves few-shot learning", eos, rule,
                null=NULL + "; control: the separator untuned (format without tuning)", learned=lrn, converged=conv,
                budget=BUDGET, detail=(per_seed("{:.2f}", eos) + losses + ". " + confound
                                       + values("{:.2f}", untuned)),
                changes=[DefinitionChange(
                    "L_eos / L_plain − 1 < 0 (median seed) → the fraction of the plain-to-least-squares gap closed "
                    f"≥ {FEWSHOT_GAP_CLOSED}",
                    "§5 says tuning improves few-shot learning toward least squares; any improvement passed, and the "
                    "distance to least squares was not judged (review S3-C4)",
                    "PASS" if np.median(old) < 0 else "FAIL", float(np.median(old)))]),
        finding("fewshot-prefix",
                f"few-shot regression with the frozen {top['layers']}-layer dynamics model: a tuned prompt (prefix) "
                "with the tuned EOS format closes the gap between the plain format and least squares: (L_plain − "
                "L_prefix) / (L_plain − L_lsq)", f"{SRC} §5", "prefix-prompt tuning improves few-shot learning",
                prefix, rule, null=NULL + "; control: the separator untuned (format without tuning)", learned=lrn,
                converged=conv, budget=BUDGET,
                detail=(per_seed("{:.2f}", prefix) + losses + ". " + confound + values("{:.2f}", untuned))),
    ]
