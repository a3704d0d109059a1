"""S2 mesa-dynamics (von Oswald et al. 2023b): autoregressive transformers trained on linear dynamics become
mesa-optimizers, and the mesa layer solves the in-context least-squares problem outright.

Measured here (DESIGN.md §4 S2; reference/mesa.md §2.2–2.7), all on one fixed test set:
- the default model (2-layer, 4-head causal linear attention on constructed tokens, the authors' sandbox settings)
  after 2.5k steps of their 20k-step schedule, against their 0.431 mean loss;
- per-position loss curves of every trained model next to per-position least squares (all pairs seen so far, and
  the authors' one-pair-fewer convention) and one GD step with the best η;
- a comparison group trained alike: a single mesa layer, the softmax + mesa hybrid, deeper linear and softmax
  stacks and a full transformer on raw tokens (models.py names them);
- the 1-layer, 2-head linear model on masked tokens and its compressed 12-scalar form (analysis/compress.py),
  whose η-term is one GD step from W_0 = 0.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.algorithms.least_squares import (
    best_gd_eta, fit_gd_from_init, gd_from_init_predictions, gd_predictions, ridge_predictions,
)
from mesalab.analysis.compress import (
    compress, compressed_parameter_count, compressed_scalars, eta_term_rate, model_from_scalars,
)
from mesalab.config import config, require, require_choice, require_positive
from mesalab.models.run import predict
from mesalab.models.transformer import Transformer
from mesalab.models.weights import all_ov, all_qk
from mesalab.studies.mesa_dynamics import figures as mesa_dynamics_figures
from mesalab.studies.mesa_dynamics.models import model_setup, parameter_count, parse
from mesalab.studies.protocol import Claim, Experiment, Figure, RunContext, measured_claim
from mesalab.tasks.dynamics import DynamicsConfig, sample_states, tokens
from mesalab.train import TrainConfig, Trainer, member_of
from mesalab.train.loss import per_position_half_mse

NAME = "mesa-dynamics"
SUMMARY = "transformers trained on linear dynamics become mesa-optimizers; the mesa layer solves least squares"
SOURCE = "von Oswald et al. 2023b, Uncovering mesa-optimization algorithms in Transformers (arXiv 2309.05858)"

# Thresholds, fixed before looking at results; each applies to the median seed.
PAPER_DEFAULT_LOSS = 0.431  # the authors' sandbox notebook, epoch 24 (reference/mesa.md §2.5)
PAPER_DEFAULT_STEPS = 2500
DEFAULT_TOLERANCE = 0.10  # "≈ 0.43": within 10% either side
COMPRESSED_TOLERANCE = 0.02  # DESIGN.md §4 S2: the 12-scalar form has the same loss within 2%
GD1_TOLERANCE = 0.05  # "the 1-layer model's loss converged to one GD step's": within 5% either side
# reference/mesa.md §2.5 [M]: least squares with all pairs (λ = 1e-3) has loss 0.0045 at t = 10; the authors'
# one-pair-fewer version 0.086. Our baseline must reproduce both within 30% (they are means over random systems).
LSQ_REFERENCE = {"all": 0.0045, "one_fewer": 0.086}
LSQ_POSITION = 10
LSQ_TOLERANCE = 0.30
# The η-term identity is exact algebra, so only float32 round-off may separate the two predictions.
ETA_TERM_GAP = 1e-4
# Learning in context: the loss at the last position below half the loss at the first.
IN_CONTEXT_RATIO = 0.5
TEST_SEED = 2024


@config
class Config:
    """d, seq_len, noise: the dynamics task; seeds: ensemble members per model; n_test: test sequences.
    lr, warmup_steps, schedule_steps, end_lr, weight_decay, grad_clip: AdamW with warm-up and cosine decay,
    element-wise gradient clipping (the authors' optax.clip); init_std, act_clip: attention-only models' init and
    residual clipping. default_*: the default model's run; one_layer_*: the 1-layer masked model's run; models,
    compare_*: the comparison group, trained alike (schedule ending at compare_steps); mesa_lr, full_lr: the peak
    rates the authors' config names for mesa and full transformers. lsq_lambda, lsq_pairs: the least-squares
    baseline. mesa_method: how mesa layers solve (models.mesa)."""

    d: int = 10
    seq_len: int = 50
    noise: float = 0.01
    seeds: int = 3
    n_test: int = 2560
    chunk_steps: int = 100
    eval_batch_size: int = 256
    lr: float = 3e-4
    warmup_steps: int = 1000
    schedule_steps: int = 20_000
    end_lr: float = 1e-5
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    init_std: float = 2e-4
    act_clip: float = 1.5
    default_steps: int = 2500
    default_batch_size: int = 256
    one_layer_steps: int = 2500
    one_layer_batch_size: int = 256
    models: tuple[str, ...] = ("mesa-1", "softmax+mesa", "linear-2", "softmax-2", "linear-4", "full-2")
    compare_steps: int = 1000
    compare_batch_size: int = 64
    compare_warmup_steps: int = 200
    mesa_lr: float = 4e-4
    full_lr: float = 1e-3
    lsq_lambda: float = 1e-3
    lsq_pairs: str = "all"
    mesa_method: str = "scan"

    def __post_init__(self) -> None:
        require_positive(self, "d", "seq_len", "seeds", "n_test", "chunk_steps", "lr", "schedule_steps",
                         "default_steps", "default_batch_size", "one_layer_steps", "one_layer_batch_size",
                         "compare_steps", "compare_batch_size", "mesa_lr", "full_lr", "lsq_lambda", "init_std")
        require(self, "seeds", isinstance(self.seeds, int), "a positive integer")
        require_choice(self, "lsq_pairs", ("all", "one_fewer"))
        require_choice(self, "mesa_method", ("scan", "solve", "chunked"))
        for name in self.models:
            parse(name)
        require(self, "models", any(parse(m)[0] == "mesa" for m in self.models) or not self.models,
                "a tuple of model names that includes a mesa model (e.g. 'mesa-1'), or empty")


PRESETS = {
    "smoke": Config(seeds=3, n_test=256, chunk_steps=20, eval_batch_size=64, default_steps=40, default_batch_size=32,
                    one_layer_steps=40, one_layer_batch_size=32, models=("mesa-1", "linear-2"), compare_steps=40,
                    compare_batch_size=16, compare_warmup_steps=10, warmup_steps=10, seq_len=20),
    # About 16 minutes on 2 cores, 7 of them for the default model at the authors' setting. The comparison group
    # trains on a short schedule (600 steps at batch 64), where the full transformer needs a higher rate to leave
    # its plateau.
    "cpu": Config(one_layer_steps=1500, compare_steps=600, compare_warmup_steps=100, full_lr=3e-3),
    # The paper's sizes (reference/mesa.md §2.4–2.5): every model at batch 256 over the full 20k-step schedule, the
    # deep stacks up to 6 layers. A GPU setting: about 10 h of the 2-core CPU per seed and model.
    "paper": Config(seeds=5, default_steps=20_000, one_layer_steps=20_000,
                    models=("mesa-1", "softmax+mesa", "linear-2", "softmax-2", "linear-4", "softmax-4", "linear-6",
                            "softmax-6", "full-2", "full-4"),
                    compare_steps=20_000, compare_batch_size=256, compare_warmup_steps=1000),
}


def training(cfg: Config, steps: int, batch: int, lr: float, warmup: int, decay: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch, optimizer="adamw", lr=lr, weight_decay=cfg.weight_decay,
                       clip_value=cfg.grad_clip, schedule="warmup_cosine", warmup_steps=min(warmup, decay - 1),
                       end_lr=cfg.end_lr, decay_steps=decay, chunk_steps=cfg.chunk_steps,
                       eval_batch_size=cfg.eval_batch_size)


def setup(cfg: Config, name: str):
    return model_setup(name, cfg.d, cfg.seq_len, cfg.noise, cfg.init_std, cfg.act_clip, cfg.mesa_method)


def experiment(cfg: Config) -> Experiment:
    """The default model (what `mesalab sweep` varies)."""
    task, model = setup(cfg, "linear-2")
    return Experiment(task, model, training(cfg, cfg.default_steps, cfg.default_batch_size, cfg.lr,
                                            cfg.warmup_steps, max(cfg.schedule_steps, cfg.default_steps)))


def test_states(cfg: Config) -> jax.Array:
    """The fixed test systems [n_test, T+1, d], shared by every model and baseline."""
    task = DynamicsConfig(d=cfg.d, seq_len=cfg.seq_len, noise=cfg.noise)
    return sample_states(task, jax.random.PRNGKey(TEST_SEED), cfg.n_test)[1]


@eqx.filter_jit
def _ensemble_curves(models, x: jax.Array, y: jax.Array) -> jax.Array:
    # Module level, so every call with the same shapes reuses one compiled program.
    return eqx.filter_vmap(lambda m: per_position_half_mse(predict(m, x), y))(models)


def curves(models, task: DynamicsConfig, states: jax.Array) -> np.ndarray:
    """Per-position test loss [member, T] of a stacked ensemble (in batches, to bound memory)."""
    inputs, targets = tokens(states, task.token_format), states[:, 1:]
    size = 256
    parts = [_ensemble_curves(models, inputs[i:i + size], targets[i:i + size])
             for i in range(0, inputs.shape[0], size)]
    weights = np.diff(np.r_[np.arange(0, inputs.shape[0], size), inputs.shape[0]])
    return np.average(np.stack([np.asarray(p) for p in parts]), axis=0, weights=weights)


def train_part(cfg: Config, ctx: RunContext, part: str, name: str, train: TrainConfig, states) -> dict[str, Any]:
    task, model = setup(cfg, name)
    res = Trainer(task, functools.partial(Transformer, model), train).fit(
        cfg.seeds, checkpoint_dir=ctx.checkpoint_dir(part), resume=ctx.resume, progress=ctx.progress)
    ctx.add_metrics(res.history, part)
    per_pos = curves(res.models, task, states)
    return {"model": name, "curve": per_pos.tolist(), "loss": per_pos.mean(1).tolist(),
            "params": parameter_count(model), "seconds": res.seconds, "steps": train.steps,
            "batch_size": train.batch_size, "lr": train.lr, "_models": res.models, "_task": task}


def baselines(cfg: Config, states: jax.Array) -> dict[str, Any]:
    target = states[:, 1:]
    loss = lambda pred: np.asarray(per_position_half_mse(pred, target)).tolist()  # noqa: E731
    # η for GD-1 is fitted on other sequences than the test set.
    fit_states = sample_states(DynamicsConfig(d=cfg.d, seq_len=cfg.seq_len, noise=cfg.noise),
                               jax.random.PRNGKey(TEST_SEED + 1), cfg.n_test)[1]
    eta = float(best_gd_eta(fit_states))
    eta_init, w0 = fit_gd_from_init(fit_states)
    return {
        "lsq_all": loss(ridge_predictions(states, cfg.lsq_lambda, "all")),
        "lsq_one_fewer": loss(ridge_predictions(states, cfg.lsq_lambda, "one_fewer")),
        "gd1": loss(gd_predictions(states, eta)), "gd1_eta": eta, "zero": loss(jnp.zeros_like(target)),
        "gd1_init": loss(gd_from_init_predictions(states, eta_init, w0)), "gd1_init_eta": eta_init,
        "gd1_init_w0_norm": float(jnp.linalg.norm(w0)),
    }


def one_layer_analysis(part: dict[str, Any], states: jax.Array) -> dict[str, Any]:
    """Compress each seed's 1-layer model to its block scalars; the compressed model's loss and the η-term rate."""
    models, task = part["_models"], part["_task"]
    out: dict[str, Any] = {"compressed_loss": [], "eta_term": [], "eta_term_gap": [], "scalars_qk": [],
                           "scalars_ov": []}
    probe = states[:256]
    for i in range(len(part["loss"])):
        model = member_of(models, i)
        scalars = compressed_scalars(model, 4)
        small = compress(model, 4)
        stacked = jax.tree_util.tree_map(lambda a: a[None] if eqx.is_array(a) else a, small)
        out["compressed_loss"].append(float(curves(stacked, task, states)[0].mean()))
        eta = eta_term_rate(scalars)
        out["eta_term"].append(float(eta))
        # The η-terms alone (every other scalar zeroed) against one GD step at that rate, on the same sequences.
        keep_qk = jnp.zeros_like(scalars["qk"]).at[:, :, 3, 2].set(scalars["qk"][:, :, 3, 2])
        keep_ov = jnp.zeros_like(scalars["ov"]).at[:, :, 0, 2].set(scalars["ov"][:, :, 0, 2])
        eta_model = model_from_scalars(model, keep_qk, keep_ov)
        pred, gd = predict(eta_model, tokens(probe, task.token_format)), gd_predictions(probe, eta)
        # Relative to the GD prediction's scale, where the activation clip (±act_clip) does not bind.
        inside = jnp.abs(gd) < 0.9 * model.cfg.clip if model.cfg.clip else jnp.ones_like(gd, bool)
        gap = jnp.max(jnp.where(inside, jnp.abs(pred - gd), 0.0)) / jnp.max(jnp.where(inside, jnp.abs(gd), 0.0))
        out["eta_term_gap"].append(float(gap))
        # The 12 scalars that act on masked tokens: key/query slots 2–3, value slots 2–3 into output slot 0.
        out["scalars_qk"].append(np.asarray(scalars["qk"][0, :, 2:, 2:]).tolist())
        out["scalars_ov"].append(np.asarray(scalars["ov"][0, :, 0, 2:]).tolist())
    out["compressed_params"] = 12
    out["compressed_params_all_slots"] = compressed_parameter_count(member_of(models, 0), 4)
    return out


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    states = test_states(cfg)
    default = train_part(cfg, ctx, "default", "linear-2", training(
        cfg, cfg.default_steps, cfg.default_batch_size, cfg.lr, cfg.warmup_steps,
        max(cfg.schedule_steps, cfg.default_steps)), states)
    one_layer = train_part(cfg, ctx, "one-layer", "linear-1-masked", training(
        cfg, cfg.one_layer_steps, cfg.one_layer_batch_size, cfg.lr, cfg.warmup_steps,
        max(cfg.schedule_steps, cfg.one_layer_steps)), states)
    one_layer["analysis"] = one_layer_analysis(one_layer, states)
    group = {}
    for name in cfg.models:
        kind, _ = parse(name)
        lr = cfg.mesa_lr if kind in ("mesa", "hybrid") else cfg.full_lr if kind in ("full", "softmax-raw") else cfg.lr
        train = training(cfg, cfg.compare_steps, cfg.compare_batch_size, lr, cfg.compare_warmup_steps, cfg.compare_steps)
        group[name] = train_part(cfg, ctx, f"compare-{name}", name, train, states)
    default_model = member_of(default["_models"], int(np.argsort(default["loss"])[len(default["loss"]) // 2]))
    result = {
        "default": default, "one_layer": one_layer, "compare": group, "baselines": baselines(cfg, states),
        "default_qk": np.asarray(all_qk(default_model)).tolist(), "default_ov": np.asarray(all_ov(default_model)).tolist(),
    }
    mesa_ridges = {n: np.asarray(jnp.exp(jnp.stack([b.attn.log_ridge for b in p["_models"].blocks
                                                     if b.attn.log_ridge is not None]))).tolist()
                   for n, p in group.items() if parse(n)[0] in ("mesa", "hybrid")}
    result["mesa_ridge"] = mesa_ridges
    result["notes"] = scale_notes(cfg)
    for part in [default, one_layer, *group.values()]:
        part.pop("_models"), part.pop("_task")
    return result


def scale_notes(cfg: Config) -> list[str]:
    """What this scale can and cannot show, for the report."""
    notes = []
    if cfg.default_steps != PAPER_DEFAULT_STEPS or cfg.default_batch_size != 256:
        notes.append(f"The default model trained {cfg.default_steps} steps at batch {cfg.default_batch_size}; the "
                     f"authors' {PAPER_DEFAULT_LOSS} is for {PAPER_DEFAULT_STEPS} steps at batch 256, so that claim "
                     "is only meaningful at the cpu or paper scale.")
    if cfg.compare_steps < cfg.schedule_steps or cfg.compare_batch_size < 256:
        notes.append(f"The comparison group trained {cfg.compare_steps} steps at batch {cfg.compare_batch_size} on a "
                     "schedule that ends there. The mesa claim compares models trained alike, but the deep stacks "
                     "and the full transformer are not converged at this budget: their ranking among themselves, "
                     "and how close they come to least squares, need `--scale paper` (20k steps at batch 256, "
                     "stacks up to 6 layers; a GPU setting).")
    notes.append(f"Least squares is computed with all pairs seen so far and with the authors' one pair fewer "
                 f"(their auxiliary_models.py); the figures' summary lines use '{cfg.lsq_pairs}'.")
    return notes


def median(values) -> float:
    return float(np.median(np.asarray(values)))


def claims(cfg: Config, r: dict[str, Any]) -> list[Claim]:
    src = "von Oswald et al. 2023b §3–4; DESIGN.md §4 S2"
    per_seed = lambda v, f="{:.4f}": "per seed: " + ", ".join(f.format(x) for x in v)  # noqa: E731
    d = r["default"]
    rows = [measured_claim(
        f"the default 2-layer, 4-head linear model after {cfg.default_steps} steps (batch {cfg.default_batch_size}) "
        "reaches the authors' mean test loss", src,
        f"{PAPER_DEFAULT_LOSS} after {PAPER_DEFAULT_STEPS} steps (sandbox notebook, reference/mesa.md §2.5)",
        d["loss"], f"median seed within ±{DEFAULT_TOLERANCE:.0%} of {PAPER_DEFAULT_LOSS}"
        + ("" if cfg.default_steps == PAPER_DEFAULT_STEPS else f" (only meaningful at {PAPER_DEFAULT_STEPS} steps)"),
        abs(median(d["loss"]) / PAPER_DEFAULT_LOSS - 1) <= DEFAULT_TOLERANCE, per_seed(d["loss"]))]

    b = r["baselines"]
    for pairs, key in (("all", "lsq_all"), ("one_fewer", "lsq_one_fewer")):
        t = min(LSQ_POSITION, cfg.seq_len - 1)
        got = b[key][t]
        ref = LSQ_REFERENCE[pairs]
        which = "all pairs so far" if pairs == "all" else "one pair fewer, the authors’ code"
        rows.append(Claim(
            f"least squares (λ = {cfg.lsq_lambda:g}, {which}) loss at position t = {t} (0-based: {t} earlier "
            "tokens) matches the reference", src, f"{ref} (reference/mesa.md §2.5)", got, None,
            f"within ±{LSQ_TOLERANCE:.0%}", "PASS" if abs(got / ref - 1) <= LSQ_TOLERANCE else "FAIL",
            f"per-position curve in the figure; mean over {cfg.n_test} test systems"))

    models = {"default (linear-2)": d, "linear-1-masked": r["one_layer"], **r["compare"]}
    ratios = {n: np.asarray(p["curve"])[:, -1] / np.asarray(p["curve"])[:, 0] for n, p in models.items()}
    worst = max(ratios, key=lambda n: np.median(ratios[n]))
    rows.append(Claim(
        "every trained model learns in context: loss at the last position over loss at the first (median seed; "
        "the largest over models)", src, "per-position loss falls with context for every model",
        float(np.median(ratios[worst])), None, f"≤ {IN_CONTEXT_RATIO} for every model",
        "PASS" if all(np.median(v) <= IN_CONTEXT_RATIO for v in ratios.values()) else "FAIL",
        "; ".join(f"{n}: {np.median(v):.3f}" for n, v in ratios.items())))

    rows.append(mesa_claim(cfg, r, src))

    one = r["one_layer"]
    a = one["analysis"]
    gd1 = float(np.mean(b["gd1_init"]))
    rel = np.asarray(one["loss"]) / gd1 - 1
    rows.append(measured_claim(
        "the 1-layer linear model (2 heads, masked tokens) matches one GD step with learned η and W_0: "
        "L_TF / L_GD-1 − 1", src,
        "its loss converged to one GD step's with optimised learning rate and initial parameters", rel,
        f"|median seed| ≤ {GD1_TOLERANCE:.0%}", abs(np.median(rel)) <= GD1_TOLERANCE,
        per_seed(rel, "{:+.2%}") + f"; GD-1 mean loss {gd1:.4f} at η = {b['gd1_init_eta']:.4f} with W_0 fitted "
        f"(‖W_0‖ = {b['gd1_init_w0_norm']:.3f}; from W_0 = 0: {np.mean(b['gd1']):.4f}); negative: the trained model "
        "is better than GD-1. Its η-term rates " + ", ".join(f"{x:.4f}" for x in a["eta_term"])
        + f" against the best GD rate {b['gd1_eta']:.4f}; median |p₂| (value s_{{i−1}}, a curvature term "
        f"Σ s_{{i−1}}(s_{{i−1}}·s_t) with the η key) = {np.median(np.abs(np.asarray(a['scalars_ov'])[..., 1])):.4f} "
        f"vs median |p₁| = {np.median(np.abs(np.asarray(a['scalars_ov'])[..., 0])):.4f}", unit="%"))
    rel_c = np.abs(np.asarray(a["compressed_loss"]) / np.asarray(one["loss"]) - 1)
    rows.append(measured_claim(
        "its compressed form (12 scalars: sub-diagonal means of W_KᵀW_Q and PW_V) has the trained loss: "
        "|L_compressed / L_TF − 1|", src, "same loss within 2% (DESIGN.md §4 S2)", rel_c,
        f"median seed ≤ {COMPRESSED_TOLERANCE:.0%}", np.median(rel_c) <= COMPRESSED_TOLERANCE,
        per_seed(rel_c, "{:.2%}"), unit="%"))
    gap = np.asarray(a["eta_term_gap"])
    rows.append(measured_claim(
        "its η-terms alone (key s_{i−1}, query s_t, value s_i) are one GD step from W_0 = 0 at rate "
        "η = Σ_h PW_V·W_KᵀW_Q: max |ŷ_η-terms − ŷ_GD(η)| / max |ŷ_GD(η)|", src,
        "the η-term is exactly one GD step (reference/mesa.md §2.7)", gap, f"every seed ≤ {ETA_TERM_GAP:g}",
        bool(np.all(gap <= ETA_TERM_GAP)), per_seed(gap, "{:.1e}") + "; η per seed: "
        + ", ".join(f"{x:.4f}" for x in a["eta_term"]) + f" (best GD-1 η = {b['gd1_eta']:.4f})"))
    return rows


def mesa_claim(cfg: Config, r: dict[str, Any], src: str) -> Claim:
    group = r["compare"]
    claim = ("a single mesa layer beats the deep linear and softmax attention-only models with at least as many "
             "parameters, trained alike: L_mesa / best L_other")
    paper = "mesa-1 < linear and softmax stacks (Fig. 4 of the paper)"
    mesa = next((n for n in group if parse(n)[0] == "mesa"), None)
    rivals = {n: p for n, p in group.items() if parse(n)[0] in ("linear", "softmax")
              and mesa is not None and p["params"] >= group[mesa]["params"]}
    if mesa is None or not rivals:
        return Claim(claim, src, paper, None, None, "< 1", "NOT RUN", "needs a mesa model and a linear or softmax "
                     "model with at least as many parameters in `models`")
    best = min(rivals, key=lambda n: median(rivals[n]["loss"]))
    ratio = median(group[mesa]["loss"]) / median(rivals[best]["loss"])
    scale_note = ("" if cfg.compare_steps >= 20_000 else
                  f" At this scale the group trains {cfg.compare_steps} steps at batch {cfg.compare_batch_size}; "
                  "`--scale paper` trains 20k steps at batch 256 with stacks up to 6 layers.")
    detail = "; ".join(f"{n} ({p['params']} params): {median(p['loss']):.4f}" for n, p in group.items()) + "." + scale_note
    return Claim(claim, src, paper, ratio, None, "< 1 (median seeds)", "PASS" if ratio < 1 else "FAIL", detail)


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext) -> list[Figure]:
    return mesa_dynamics_figures.draw(cfg, results, ctx)
