"""The findings and checks of the language-modelling study, with their thresholds (fixed before any run).

Losses are mean next-byte cross-entropies (nats/byte) on the fixed validation windows at the end of the equal token
budget; perplexity is e^loss. Models are compared seed by seed: seed s of every model trained on the same batches
and is scored on the same windows, so Δ_s is a paired difference. "Seed spread" is the sample standard deviation
over seeds (ddof 1) of the quantity compared; every finding needs a strict majority of seeds (studies/verdicts.py).

Findings (each FAILs on untrained models, the runner's null; the unigram model is the trivial predictor of the
learned guard):
- ngram-helps: adding n-gram layers lowers validation loss (so perplexity) for at least one base: Δ_s = L(base) −
  L(base+ngram) > the seed spread (the larger of the two models'), issue 21 finding 1 and Akyürek et al.'s 1.14 ppl
  (6.7%). The base judged is the first that passes, else the one nearest passing; every base is in the detail.
- hybrid-matches-softmax: the hybrid's validation loss is within HYBRID_MARGIN of the softmax model's, or better:
  L(hybrid)_s / L(softmax)_s − 1 ≤ 2% (issue 21 finding 2; the mesa paper's "promising results"). 2% of the loss
  is below the smallest gain the anchors call meaningful: Akyürek et al.'s 6.7% perplexity is 0.069 nats/token, 2.4%
  of their loss (reference/icll.md §1.7). A fixed margin, not the seed spread: noise must not make "within" easier.
- icl-at-least-softmax: every model with mesa or n-gram layers learns in context at least as much as the softmax
  model: with Olsson's ICL score S (loss at a late token minus an early one; negative = ICL, measures.icl_score),
  Δ_s = S(softmax)_s − S(model)_s ≥ −(seed spread of S(softmax)), the worst model per seed judged (issue 21 finding
  3). The detail says which way each model comes out.
Guard (learned): a seed counts only when every model its row compares has validation loss ≤ (1 − LEARNED_MARGIN) ×
the unigram model's loss, i.e. it uses context, and did not diverge.

Convergence is shown, not required. The issue defines every measure "at a fixed token budget", as the anchors
compare language models (equal tokens, not convergence; a language model's loss keeps falling for far longer than
any budget here), so the protocol's end-of-training rule does not gate these rows; each row's detail shows how much
each model's validation loss still fell over the last quarter of training (studies/convergence.py).

Check: params-matched: every model's parameter count within PARAM_MATCH of the softmax model's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mesalab.studies.convergence import cross_entropy_convergence
from mesalab.studies.language_modelling.config import NGRAM
from mesalab.studies.verdicts import Claim, DefinitionChange, Learned, above, at_least, at_most, check, finding, not_run, within

SRC_MESA = "von Oswald et al. 2023b §LM (reference/mesa.md §2.10–2.12); issue 21"
SRC_NGRAM = "Akyürek et al. 2024 (reference/icll.md §1.7); issue 21"
NULL = ("untrained models at initialisation; beside them the unigram model (training-split byte frequencies: ICL "
        "score 0), which every counted seed must beat")
LEARNED_MARGIN = 0.10  # a counted seed's loss is at most 90% of the unigram model's: it uses context
HYBRID_MARGIN = 0.02   # the hybrid's loss at most 2% above the softmax model's (2.4% = Akyürek et al.'s gain)
PARAM_MATCH = 0.05     # parameter counts within 5% of the softmax model's
VOCAB = 256


def spread(values: Any) -> float:
    """Sample standard deviation over seeds (0 for one seed)."""
    v = np.asarray(values, float)
    return float(np.std(v, ddof=1)) if v.size > 1 else 0.0


def learned(r: dict[str, Any], names: list[str]) -> Learned:
    """Per seed: every model in `names` beat the unigram model by LEARNED_MARGIN and stayed finite."""
    uni = r["unigram_loss"]
    ok = np.ones(len(r["models"][names[0]]["val_loss"]), bool)
    for n in names:
        m = r["models"][n]
        ok &= np.asarray(Learned.beats(m["val_loss"], uni, LEARNED_MARGIN).per_seed) & np.asarray(m["alive"], bool)
    return Learned(tuple(bool(x) for x in ok), f"each of {', '.join(names)}: loss ≤ {1 - LEARNED_MARGIN:g} × "
                   f"{uni:.4g}, the unigram model's, without diverging")


def convergence_text(r: dict[str, Any], names: list[str]) -> str:
    parts = []
    for n in names:
        c = r["models"][n]["curve"]
        conv = cross_entropy_convergence(c["steps"], c["values"], c["time"], VOCAB)
        parts.append(f"{n} {'–' if conv is None else f'{conv.drop:.1%}'}")
    return "validation loss still fell (last quarter, units of log 256): " + ", ".join(parts)


def _loss(r: dict[str, Any], name: str) -> np.ndarray:
    return np.asarray(r["models"][name]["val_loss"], float)


def ngram_row(r: dict[str, Any], base: str) -> tuple[Claim, float]:
    """The ngram-helps row judged on one base, and how far its judged Δ is above its bound (nan: no learned seed)."""
    ng = base + NGRAM
    lb, ln = _loss(r, base), _loss(r, ng)
    bound = max(spread(lb), spread(ln))
    row = finding(
        "ngram-helps", "adding hard-wired n-gram layers lowers validation perplexity for at least one base model at "
        f"equal parameters and tokens: loss of the base minus loss with n-gram layers (here {base})", SRC_NGRAM,
        "hard-wired n-gram layers lower a 340M model's SlimPajama perplexity by up to 1.14 points (6.7%)", lb - ln,
        above(bound, "issue 21: differences judged against the seed spread (the larger of the two models' std)"),
        null=NULL, learned=learned(r, [base, ng]),
        detail=f"perplexity {base}: {', '.join(f'{np.exp(x):.3f}' for x in lb)}; {ng}: "
        f"{', '.join(f'{np.exp(x):.3f}' for x in ln)}; {convergence_text(r, [base, ng])}")
    return row, (row.measured - bound if row.measured is not None else float("nan"))


def claims(cfg: Any, r: dict[str, Any]) -> list[Claim]:
    # The config's model order, not the results' (results.json stores its keys sorted): the first passing base is
    # the judged one, so the order must not change with a re-judge from disk (runner.rejudge).
    r = {**r, "models": {m: r["models"][m] for m in cfg.models if m in r["models"]}}
    models = r["models"]
    rows: list[Claim] = []

    bases = [m.removesuffix(NGRAM) for m in models if m.endswith(NGRAM) and m.removesuffix(NGRAM) in models]
    if bases:
        tried = [ngram_row(r, b) for b in bases]
        passing = [row for row, _ in tried if row.verdict == "PASS"]
        nearest = max(tried, key=lambda t: t[1] if np.isfinite(t[1]) else -np.inf)[0]
        chosen = passing[0] if passing else nearest
        others = "; ".join(f"{b}: {row.verdict} (Δ {row.measured_text} nats, {row.threshold})" for b, (row, _) in
                           zip(bases, tried))
        rows.append(dataclasses.replace(chosen, detail=f"{chosen.detail}. Every base: {others}"))
    else:
        rows.append(not_run("ngram-helps", "adding n-gram layers lowers validation perplexity for at least one base",
                            SRC_NGRAM, "−1.14 ppl (6.7%)", "Δ loss > seed spread",
                            "no '<base>+ngram' model with its base among `models`", null=NULL))

    if "hybrid" in models:
        ratio = _loss(r, "hybrid") / _loss(r, "softmax") - 1
        rows.append(finding(
            "hybrid-matches-softmax", "the hybrid (softmax first, mesa after) reaches a validation loss within "
            f"{HYBRID_MARGIN:.0%} of the softmax model's, or better, at equal parameters and tokens: "
            "L(hybrid) / L(softmax) − 1", SRC_MESA,
            "replacing self-attention layers with mesa layers gave promising language-modelling results", ratio,
            at_most(HYBRID_MARGIN, "below Akyürek et al.'s 6.7% perplexity gain (2.4% of the loss), reference/icll.md "
                    "§1.7", unit="%"), null=NULL, learned=learned(r, ["softmax", "hybrid"]),
            detail=f"perplexity softmax: {', '.join(f'{np.exp(x):.3f}' for x in _loss(r, 'softmax'))}; hybrid: "
            f"{', '.join(f'{np.exp(x):.3f}' for x in _loss(r, 'hybrid'))}; learned λ per mesa head (seed 0): "
            f"{np.round(models['hybrid']['ridge'][0], 3).tolist() if models['hybrid']['ridge'] else '–'}; "
            f"{convergence_text(r, ['softmax', 'hybrid'])}"))
    else:
        rows.append(not_run("hybrid-matches-softmax", "the hybrid's validation loss is within a margin of softmax's",
                            SRC_MESA, "promising results", f"≤ {HYBRID_MARGIN:.0%}", "'hybrid' is not among `models`",
                            null=NULL))

    rows.append(icl_row(r))
    rows.append(params_row(r))
    return [_with_preset_change(cfg, row) for row in rows]


# The cpu preset was chosen twice (package docstring): first 4 models × 80 steps, sized from throughput probes on a
# loaded machine; that run took 2.6 minutes, and the preset was re-chosen from its measured rates (8 models × 200
# steps). The first run's verdicts and values, which the report lists on each row at the cpu preset's budget.
FIRST_CPU_PRESET = {"ngram-helps": ("FAIL", 0.037), "hybrid-matches-softmax": ("PASS", -0.031),
                    "icl-at-least-softmax": ("PASS", 0.008)}


def _with_preset_change(cfg: Any, row: Claim) -> Claim:
    from mesalab.studies.language_modelling.config import PRESETS

    cpu = PRESETS["cpu"]
    if row.id not in FIRST_CPU_PRESET or (cfg.steps, cfg.batch_size, cfg.seq_len) != (cpu.steps, cpu.batch_size,
                                                                                       cpu.seq_len):
        return row
    verdict, value = FIRST_CPU_PRESET[row.id]
    change = DefinitionChange(
        "cpu preset: 4 models × 80 steps → 8 models × 200 steps, re-chosen after the first cpu run",
        "the first preset was sized from throughput probes on a loaded machine and used 2.6 of the issue's 30 minutes; "
        "the second was sized from that run's measured rates, thresholds unchanged", verdict, value)
    return dataclasses.replace(row, changes=tuple(row.changes) + (change,))


def icl_row(r: dict[str, Any]) -> Claim:
    models = r["models"]
    with_mech = [m for m in models if m != "softmax" and (m.endswith(NGRAM) or "mesa" in models[m]["layers"])]
    if not with_mech:
        return not_run("icl-at-least-softmax", "models with mesa or n-gram layers have an ICL score at least the "
                       "softmax model's", SRC_MESA, "the papers' story", "Δ ≥ −seed spread",
                       "no model with mesa or n-gram layers among `models`", null=NULL)
    s_sm = np.asarray(models["softmax"]["icl_score"], float)
    deltas = {m: s_sm - np.asarray(models[m]["icl_score"], float) for m in with_mech}  # > 0: more ICL than softmax
    worst = np.min(np.stack(list(deltas.values())), axis=0)
    tol = spread(s_sm)

    def way(d: np.ndarray) -> str:
        med = float(np.median(d))
        return "more ICL than softmax" if med > tol else "less ICL than softmax" if med < -tol else "within the spread"

    early, late = r["icl_positions"]
    return finding(
        "icl-at-least-softmax", "models with mesa or n-gram layers learn in context at least as much as the softmax "
        f"model: Olsson's ICL score (loss at token {late} minus token {early}) of softmax minus that of each model, "
        "the worst model per seed", f"{SRC_MESA}; {SRC_NGRAM}; Olsson et al. 2022 (reference/induction.md §4)",
        "mesa and n-gram layers implement in-context learning (the papers' story; tested, not assumed)", worst,
        at_least(-tol, "issue 21: judged against the seed spread of the softmax model's ICL score"), null=NULL,
        learned=learned(r, ["softmax", *with_mech]),
        detail="ICL score per seed: softmax " + ", ".join(f"{x:.3f}" for x in s_sm) + "; " + "; ".join(
            f"{m} " + ", ".join(f"{x:.3f}" for x in models[m]["icl_score"]) + f" → {way(deltas[m])} (median Δ "
            f"{np.median(deltas[m]):+.3f})" for m in with_mech) + " (the unigram model: 0)")


def params_row(r: dict[str, Any]) -> Claim:
    models = r["models"]
    ref = models["softmax"]["params"]
    dev = max(abs(m["params"] / ref - 1) for m in models.values())
    return check("params-matched", "every model's parameter count is within 5% of the softmax model's (the largest "
                 "relative difference)", "issue 21: models matched in parameter count", "equal parameters", dev,
                 within(PARAM_MATCH, "issue 21", unit="%"),
                 detail=", ".join(f"{n} {m['params']:,}" for n, m in models.items()))
