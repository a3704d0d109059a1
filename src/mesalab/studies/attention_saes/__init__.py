"""Study S7 `attention-saes`: sparse autoencoders on attention outputs, hook_z concatenated over heads (Kissane,
Krzyzanowski, Bloom, Conmy, Nanda 2024, "Interpreting attention layer outputs with sparse autoencoders";
reference/induction.md §5; issue 19), applied to a model whose circuit is known.

The frozen model is S6's (`induction-circuits`: exemplar, label, exemplar, label, query; 2 attention-only layers of
8 heads, RoPE; tasks/exemplar_label.py), unclamped with all heads, trained here with S6's recipe or loaded from an
S6 run (`--set from_run=RUN`; its "none-all" models). Why this model and not an LM on repeated random tokens: S6
marks which layer-1 heads are induction heads (kept alone they solve the task), and the task fixes where an
induction feature must fire (the query, a repeated exemplar) and what it must attribute to (the label after the
exemplar's earlier occurrence, at position 1 or 3 at random), so every family rule and the head finding can be
tested against known ground truth; on random tokens there is no such head marking to compare with.

Parts (parts.py):
- the base models, with their checkpoints every `timeline_every` steps (the run continues from its own checkpoint
  at each, so the numbers are an uninterrupted run's), S6's phase-change step and head analysis;
- per base model and layer, one vmapped ensemble of SAEs over λ × seeds (analysis/sae.py: Kissane's architecture,
  loss, Adam β = (0, 0.9999), unit decoder rows with the parallel gradient removed, dead-feature resampling), the
  activations streamed from the frozen model; λ = c·E‖x‖ for a fixed grid of c; L0, loss recovered against zero
  ablation, explained variance and dead fraction of every member (analysis/sae_metrics.py), the chosen member's
  feature families (families.py) and head attribution; every SAE written in SAELens's layout under saes/;
- the timeline: SAEs on every checkpoint (one vmapped ensemble over checkpoints), the induction family's share;
- the S8 model (`--set s8_from_run=RUN`, an in-context-language-learning run; ngram.py): the same SAEs on its last
  layer's hook_z over REGBENCH test prompts, the n-gram-continuation family and its heads.
Findings and checks: claims.py.

The cpu recipe (`--scale cpu`), set from timings before any finding was judged (2 shared cores): the base model is
S6's cpu recipe (K = 5 classes, Adam 1e-3, batch 32; S6's probes put its phase change at 4,000–8,000 steps), trained
12,000 steps (1.5× the latest) for 3 seeds (≈ 9 ms per step for 2 seeds with S6's metrics); SAEs 8× wide (Kissane
32×; 512 features for d_in = 64), 4 scales c × 2 seeds = 8 members per ensemble, 3,000 steps of 32 sequences
(160 tokens) at lr 3e-3 (Kissane's 1.2e-3 is set for 1e8 tokens; this budget is 5·10⁵) — 13 ms per step for the
8 members, so ≈ 40 s per ensemble, 6 ensembles (2 layers × 3 models), and as many again in the null run; the
timeline every 1,500 steps (8 checkpoints), 1,000 SAE steps each.
"""

from __future__ import annotations

from typing import Any

from mesalab.studies.attention_saes import figures as attention_saes_figures
from mesalab.studies.attention_saes import ngram
from mesalab.studies.attention_saes.claims import claims
from mesalab.studies.attention_saes.config import PRESETS, Config, experiment
from mesalab.studies.attention_saes.parts import (
    base_models,
    marked_heads,
    saes,
    timeline,
    with_run_keys,
)
from mesalab.studies.protocol import RunContext

NAME = "attention-saes"
SUMMARY = "sparse autoencoders on attention outputs (hook_z) of a model with known induction heads"
SOURCE = "Kissane et al. 2024, 'Interpreting attention layer outputs with sparse autoencoders'"

__all__ = ["NAME", "PRESETS", "SOURCE", "SUMMARY", "Config", "claims", "experiment", "figures", "run"]


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    cfg = with_run_keys(cfg)
    models, base, checkpoints = base_models(cfg, ctx)
    heads = marked_heads(cfg, models)
    n = len(heads["full"])
    out = {"base": base, "heads": heads, "saes": saes(cfg, ctx, models, heads)}
    if checkpoints:
        out["timeline"] = timeline(cfg, checkpoints, n)
    s8 = ngram.part(cfg, ctx)
    if s8 is not None:
        out["s8"] = s8
    out["notes"] = notes(cfg, out)
    return out


def notes(cfg: Config, r: dict[str, Any]) -> list[str]:
    out = [(f"Frozen model: S6 induction-circuits, unclamped, all {cfg.n_heads} heads; "
            + (f"loaded from {cfg.from_run}." if cfg.from_run else
               f"trained here: K = {cfg.n_classes}, Adam {cfg.lr}, batch {cfg.batch_size}, {cfg.steps} steps, "
               f"{cfg.seeds} seeds."))]
    out.append(f"SAEs on blocks.{{{', '.join(map(str, cfg.sae_layers))}}}.attn.hook_z (d_in = {cfg.n_heads * cfg.d_head}, "
               f"d_sae = {cfg.expansion * cfg.n_heads * cfg.d_head}); λ = c·E‖x‖ for c in {list(cfg.l1_scales)}, "
               f"{cfg.sae_seeds} seeds, {cfg.sae_steps} steps of {cfg.sae_batch} sequences (5 tokens each), lr "
               f"{cfg.sae_lr}; written in SAELens's layout under saes/model<seed>-layer<l>/ (cfg.json + "
               "sae_weights.safetensors).")
    for layer, per in r["saes"].items():
        shares = ["; ".join(f"{k} {v:.2g}" for k, v in s["family_share"].items()) for s in per]
        out.append(f"Layer {layer}: family shares of live features per model: " + " | ".join(shares))
    if cfg.expansion != 32 or cfg.sae_steps * cfg.sae_batch * 5 < 1e8:
        out.append("Not Kissane's SAE budget (32× wide, ≈ 1e8 tokens): see the study docstring for the cpu recipe; "
                   "`--scale paper` runs his.")
    out.append("The timeline trains one SAE per checkpoint (one λ, one seed, no resampling) as one vmapped "
               "ensemble over checkpoints; the null run has one untrained 'checkpoint'.")
    return out


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext):
    return attention_saes_figures.draw(cfg, results, ctx)
