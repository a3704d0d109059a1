"""S3 mesa-reverse-engineering (von Oswald et al. 2023b §4–5; seeds 000 and 002): what deep models trained on
linear dynamics compute.

Measured here (DESIGN.md §4 S3; reference/mesa.md §2.7–2.11):
- linear probes (analysis/probes.py, held out) from every layer × position of deep linear-attention models for
  s_{t+1} and the preconditioned input (S_{<t}S_{<t}ᵀ + λI)⁻¹ s_t: R² against depth and context length;
- CompressedAlg-d (analysis/compress.py): every head's W_KᵀW_Q and PW_V replaced by 4×4 block-diagonal means,
  its loss and parameter count against the trained model's, and the loss along the path between them;
- the mesa dataset of raw-token models: s_{t−1} decoded from layer 1, and layer 1's sensitivity to its own,
  previous and other tokens;
- preconditioning constructions (constructions/neumann.py): error against depth on the task's Gram matrices,
  term by term (Neumann) and by repeated squaring (Newton–Schulz), with their conditioning;
- few-shot regression (repurpose.py) with a dynamics-trained model: plain, EOS-tuned and prefix-tuned
  formats against least squares.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis.compress import Interpolated, compress, compressed_parameter_count, interpolate, interpolated
from mesalab.analysis.probes import by_position, probe
from mesalab.analysis.sensitivity import own_previous_other, token_sensitivity
from mesalab.config import config, require, require_positive
from mesalab.constructions.neumann import (
    neumann_lsa, neumann_readout, newton_lsa, newton_readout, preconditioning_tokens,
)
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer
from mesalab.studies.mesa_reverse import figures as mesa_reverse_figures
from mesalab.studies.mesa_reverse import repurpose
from mesalab.studies.mesa_dynamics import curves
from mesalab.studies.mesa_dynamics.models import model_setup, parameter_count
from mesalab.studies.protocol import Claim, RunContext, measured_claim
from mesalab.tasks.dynamics import DynamicsConfig, probe_targets, sample_states, tokens
from mesalab.train import TrainConfig, Trainer, member_of
from mesalab.train.engine import as_members, init_models

NAME = "mesa-reverse-engineering"
SUMMARY = "probes, compressed algorithms, mesa datasets, Neumann depth scaling and few-shot repurposing"
SOURCE = "von Oswald et al. 2023b, Uncovering mesa-optimization algorithms in Transformers (arXiv 2309.05858)"

# Thresholds, fixed before looking at results; each applies to the median seed.
COMPRESSED_TOLERANCE = 0.05  # DESIGN.md §4 S3 / issue: CompressedAlg-d loss within 5% of the trained model
COMPRESSED_PARAM_SHARE = 0.01  # … using ≤ 1% of its parameters (0.5% for the paper's 6 layers)
COMPRESSED_MIN_DEPTH = 4  # … for d ≥ 4 layers
COPY_R2 = 0.9  # s_{t−1} decodable from layer 1 of raw-token models with R² > 0.9
TARGET_ERROR = 1e-3  # the error the two preconditioning constructions must reach
# "far fewer layers": squaring needs at most a third of the term-by-term depth (log log vs log; at κ ≈ 60 and
# ε = 1e-3 the ratio is ≈ 12 / 400).
DEPTH_RATIO = 1 / 3
TEST_SEED, PROBE_FIT_SEED, PROBE_TEST_SEED = 2024, 31, 32
RETRAIN_SEED_OFFSET = 100  # the retrained interpolated models start from weights no trained member had


@config
class Config:
    """d, seq_len, noise: the task; seeds: members per model. depths, deep_*: the linear-attention stacks
    (4 heads, key deep_key) for probes, compression and few-shot; raw_*: the raw-token softmax model for the mesa
    dataset; lr, weight_decay, grad_clip, warmup_steps, init_std, act_clip: AdamW as in mesa-dynamics, on a
    schedule that ends with training. n_probe: sequences to fit probes on (as many again score them), probe_lambda:
    their ridge. neumann_depths, neumann_lambda, neumann_positions: the constructions' depths, λ and the prefix
    lengths whose Gram matrices they invert. fewshot_*: the regression tasks and the tuning of E and the prompt."""

    d: int = 10
    seq_len: int = 50
    noise: float = 0.01
    seeds: int = 3
    depths: tuple[int, ...] = (2, 4)
    deep_key: int = 40
    deep_steps: int = 1000
    deep_batch_size: int = 64
    raw_layers: int = 2
    raw_steps: int = 3000
    raw_batch_size: int = 64
    raw_lr: float = 3e-3
    lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    init_std: float = 2e-4
    act_clip: float = 1.5
    chunk_steps: int = 250
    eval_batch_size: int = 256
    n_test: int = 1024
    n_probe: int = 1024
    probe_lambda: float = 1e-3
    interpolation_points: int = 5
    neumann_depths: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 24, 32, 48)
    neumann_lambda: float = 1e-3
    neumann_positions: tuple[int, ...] = (11, 15, 25, 50)
    neumann_systems: int = 16
    fewshot_examples: int = 15
    fewshot_prefix: int = 4
    fewshot_steps: int = 1000
    fewshot_batch_size: int = 64
    fewshot_lr: float = 3e-2
    fewshot_test: int = 512

    def __post_init__(self) -> None:
        require_positive(self, "d", "seq_len", "seeds", "deep_key", "deep_steps", "deep_batch_size", "raw_layers",
                         "raw_steps", "raw_batch_size", "raw_lr", "lr", "n_test", "n_probe", "probe_lambda",
                         "interpolation_points", "neumann_lambda", "neumann_systems", "fewshot_examples",
                         "fewshot_steps", "fewshot_batch_size", "fewshot_lr", "fewshot_test")
        require(self, "seeds", isinstance(self.seeds, int), "a positive integer")
        require(self, "depths", len(self.depths) > 0 and all(isinstance(k, int) and k >= 1 for k in self.depths),
                "a non-empty tuple of layer counts >= 1")
        require(self, "neumann_positions", all(2 <= p <= self.seq_len for p in self.neumann_positions),
                f"prefix lengths in [2, seq_len = {self.seq_len}]")
        require(self, "fewshot_examples", 3 * self.fewshot_examples + self.fewshot_prefix <= self.seq_len,
                f"at most (seq_len − fewshot_prefix) / 3 examples, so the eos format fits the trained length "
                f"{self.seq_len}")


PRESETS = {
    "smoke": Config(seeds=3, seq_len=20, depths=(1, 2), deep_key=8, deep_steps=30, deep_batch_size=16, raw_steps=30,
                    raw_batch_size=16, chunk_steps=15, eval_batch_size=32, n_test=64, n_probe=64,
                    interpolation_points=3, neumann_depths=(1, 4, 8), neumann_positions=(11, 20), neumann_systems=4,
                    fewshot_examples=5, fewshot_prefix=2, fewshot_steps=10, fewshot_batch_size=8, fewshot_test=32),
    "cpu": Config(),
    # The paper's sizes: 2–6-layer stacks trained 20k steps at batch 256 (a GPU setting).
    "paper": Config(seeds=5, depths=(2, 4, 6), deep_steps=20_000, deep_batch_size=256, raw_steps=20_000,
                    raw_batch_size=256, warmup_steps=1000, n_test=2560, n_probe=4096, fewshot_test=2560),
}


def training(cfg: Config, steps: int, batch: int, lr: float) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch, optimizer="adamw", lr=lr, weight_decay=cfg.weight_decay,
                       clip_value=cfg.grad_clip, schedule="warmup_cosine", warmup_steps=min(cfg.warmup_steps, steps - 1),
                       end_lr=lr / 30, chunk_steps=cfg.chunk_steps, eval_batch_size=cfg.eval_batch_size)


def train(cfg: Config, ctx: RunContext, part: str, name: str, train_cfg: TrainConfig):
    task, model = model_setup(name, cfg.d, cfg.seq_len, cfg.noise, cfg.init_std, cfg.act_clip, key_size=cfg.deep_key)
    res = Trainer(task, functools.partial(Transformer, model), train_cfg).fit(
        cfg.seeds, checkpoint_dir=ctx.checkpoint_dir(part), resume=ctx.resume, progress=ctx.progress)
    ctx.add_metrics(res.history, part)
    return task, model, res


def states_for(cfg: Config, seed: int, n: int) -> jax.Array:
    return sample_states(DynamicsConfig(d=cfg.d, seq_len=cfg.seq_len, noise=cfg.noise), jax.random.PRNGKey(seed), n)[1]


# One compiled forward pass per model shape and site list (sites is static: a tuple).
cached_run = eqx.filter_jit(run_model)


def probe_model(model, task: DynamicsConfig, fit_states, test_states, lam: float) -> dict[str, list]:
    """Held-out R² [site, position] for each target, sites = the embedding and every layer's residual output."""
    sites = ("hook_embed",) + tuple(f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers))

    def acts(states):
        _, cache = cached_run(model, tokens(states, task.token_format), sites=sites)
        return jnp.stack([by_position(cache[s]) for s in sites])  # [site, T, N, f]

    train_a, test_a = acts(fit_states), acts(test_states)
    train_t, test_t = probe_targets(fit_states), probe_targets(test_states)
    return {name: np.asarray(probe(train_a, by_position(train_t[name]), test_a, by_position(test_t[name]),
                                   lam).r2).tolist()
            for name in ("s_next", "preconditioned", "s_t")}


def interpolation(model, task, states, points: int) -> list[float]:
    """Loss along (1 − a)·trained + a·compressed products, a ∈ [0, 1] (static; the authors retrain with the mix)."""
    return [float(curves(stack(interpolate(model, 4, float(a))), task, states)[0].mean())
            for a in np.linspace(0.0, 1.0, points)]


def stack(model):
    """One model as a 1-member ensemble (what `mesa_dynamics.curves` takes)."""
    return jax.tree_util.tree_map(lambda a: a[None] if eqx.is_array(a) else a, model)


def run_deep(cfg: Config, ctx: RunContext, layers: int, states, fit_states, probe_states) -> dict[str, Any]:
    task, model_cfg, res = train(cfg, ctx, f"linear-{layers}", f"linear-{layers}",
                                 training(cfg, cfg.deep_steps, cfg.deep_batch_size, cfg.lr))
    out: dict[str, Any] = {"layers": layers, "params": parameter_count(model_cfg), "loss": [], "compressed_loss": [],
                           "probes": [], "interpolation": [], "fewshot": [], "seconds": res.seconds}
    out["compressed_params"] = compressed_parameter_count(member_of(res.models, 0), 4)
    x, y = repurpose.sample_regression(jax.random.PRNGKey(TEST_SEED + 7), cfg.fewshot_test, cfg.fewshot_examples, cfg.d)
    out["fewshot_lsq"] = np.asarray(repurpose.least_squares_curve(x, y)).tolist()
    for i in range(cfg.seeds):
        model = member_of(res.models, i)
        out["loss"].append(float(curves(stack(model), task, states)[0].mean()))
        out["compressed_loss"].append(float(curves(stack(compress(model, 4)), task, states)[0].mean()))
        out["probes"].append(probe_model(model, task, fit_states, probe_states, cfg.probe_lambda))
        out["interpolation"].append(interpolation(model, task, states, cfg.interpolation_points))
        if layers == max(cfg.depths):
            out["fewshot"].append(fewshot(cfg, model, task, x, y, i))
    if layers == max(cfg.depths):
        out["retrained"] = retrain_interpolated(cfg, ctx, layers, task, model_cfg, res.models, states)
    return out


def retrain_interpolated(cfg: Config, ctx: RunContext, layers: int, task, model_cfg, trained, states) -> dict[str, Any]:
    """The authors' interpolation experiment (reference/mesa.md §2.7): fresh models (new seeds) whose heads average
    their own products with the frozen CompressedAlg products of the trained members, trained with the same budget.
    Returns each member's test-loss curve and its final loss on `states`."""
    members = [RETRAIN_SEED_OFFSET + i for i in range(cfg.seeds)]
    fresh = init_models(functools.partial(Transformer, model_cfg), as_members(members))
    start = interpolated(fresh, trained, 4)
    make = lambda key: interpolated(Transformer(model_cfg, key=key), Transformer(model_cfg, key=key), 4)  # noqa: E731
    part = f"interpolated-{layers}"
    res = Trainer(task, make, training(cfg, cfg.deep_steps, cfg.deep_batch_size, cfg.lr),
                  frozen=Interpolated.frozen_leaves).fit(
        members, checkpoint_dir=ctx.checkpoint_dir(part), resume=ctx.resume, progress=ctx.progress, init=start)
    ctx.add_metrics(res.history, part)
    hist = res.history[res.history.metric == "test_loss"]
    return {
        "steps": sorted(hist.step.unique().tolist()),
        "test_loss": [hist[hist.member == i].sort_values("step").value.tolist() for i in range(cfg.seeds)],
        "loss": curves(res.models, task, states).mean(1).tolist(),
        "seconds": res.seconds,
    }


def fewshot(cfg: Config, model, task, x, y, seed: int) -> dict[str, list]:
    def curve(eos=None, prefix=None):
        return np.asarray(repurpose.few_shot_curve(
            repurpose.few_shot_predictions(model, task.token_format, x, y, eos, prefix), y)).tolist()

    tuned = {}
    for prefix_len in (0, cfg.fewshot_prefix):
        tuned[prefix_len] = repurpose.tune_tokens(
            model, task.token_format, cfg.d, cfg.fewshot_examples, prefix_len=prefix_len, steps=cfg.fewshot_steps,
            batch=cfg.fewshot_batch_size, lr=cfg.fewshot_lr, key=jax.random.PRNGKey(100 + seed))
    return {"plain": curve(), "eos": curve(tuned[0]["eos"]),
            "prefix": curve(tuned[cfg.fewshot_prefix]["eos"], tuned[cfg.fewshot_prefix]["prefix"])}


def run_raw(cfg: Config, ctx: RunContext, fit_states, probe_states) -> dict[str, Any]:
    name = f"softmax-raw-{cfg.raw_layers}"
    task, model_cfg, res = train(cfg, ctx, name, name, training(cfg, cfg.raw_steps, cfg.raw_batch_size, cfg.raw_lr))
    out: dict[str, Any] = {"model": name, "r2": [], "sensitivity": [], "seconds": res.seconds}
    site = "blocks.0.hook_resid_post"
    fit_t, test_t = probe_targets(fit_states, lags=(1, 2, 3)), probe_targets(probe_states, lags=(1, 2, 3))
    for i in range(cfg.seeds):
        model = member_of(res.models, i)

        def layer1(states):
            _, cache = cached_run(model, tokens(states, task.token_format), sites=(site,))
            return by_position(cache[site])

        a_fit, a_test = layer1(fit_states), layer1(probe_states)
        # Before position k the target s_{t−k} is the constant 0 and R² is undefined; the claim and the figure
        # skip those positions.
        out["r2"].append({k: np.asarray(probe(a_fit, by_position(fit_t[k]), a_test, by_position(test_t[k]),
                                              cfg.probe_lambda).r2).tolist()
                          for k in ("s_t-1", "s_t-2", "s_t-3", "s_next")})
        norms = jax.vmap(lambda t: token_sensitivity(model, t, site))(tokens(probe_states[:16], task.token_format))
        out["sensitivity"].append(np.asarray(jnp.mean(jax.vmap(own_previous_other)(norms), 0)).tolist())
    return out


def run_neumann(cfg: Config) -> dict[str, Any]:
    """Relative error of both constructions against A⁻¹ s on the task's own Gram matrices: at prefix length t,
    A = λI + S_{<t}S_{<t}ᵀ and s = s_t, for `neumann_systems` sequences. One construction per depth serves all of
    them, with c = the largest λ_max among them (a fixed network cannot adapt c per sequence)."""
    states = np.asarray(states_for(cfg, TEST_SEED + 3, cfg.neumann_systems))
    out: dict[str, Any] = {"depths": list(cfg.neumann_depths), "positions": list(cfg.neumann_positions),
                           "neumann": [], "newton": [], "kappa": []}
    lam = cfg.neumann_lambda
    for pos in cfg.neumann_positions:
        data, query = states[:, : pos - 1], states[:, pos - 1]  # S_{<t} and s_t per system
        a = lam * np.eye(cfg.d) + np.einsum("bni,bnj->bij", data, data)
        eig = np.linalg.eigvalsh(a)
        c = float(eig[:, -1].max())
        exact = np.linalg.solve(a, query[..., None])[..., 0]

        def errors(model, readout, w_scale):
            toks = jax.vmap(lambda s, q: preconditioning_tokens(s, q, lam, w_scale))(data, query)
            y = np.asarray(readout(jax.vmap(model)(toks)[:, -1]), np.float64)
            return float(np.median(np.linalg.norm(y - exact, axis=-1) / np.linalg.norm(exact, axis=-1)))

        out["neumann"].append([errors(neumann_lsa(cfg.d, k, c), lambda o, k=k: neumann_readout(o, k, c), 0.0)
                               for k in cfg.neumann_depths])
        out["newton"].append([errors(newton_lsa(cfg.d, k), lambda o, k=k: newton_readout(o, k), 1.0 / c)
                              for k in cfg.neumann_depths])
        out["kappa"].append(float(np.median(eig[:, -1] / eig[:, 0])))
    return out


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    states = states_for(cfg, TEST_SEED, cfg.n_test)
    fit_states, probe_states = states_for(cfg, PROBE_FIT_SEED, cfg.n_probe), states_for(cfg, PROBE_TEST_SEED, cfg.n_probe)
    deep = [run_deep(cfg, ctx, k, states, fit_states, probe_states) for k in cfg.depths]
    raw = run_raw(cfg, ctx, fit_states, probe_states)
    return {"deep": deep, "raw": raw, "neumann": run_neumann(cfg), "notes": scale_notes(cfg)}


def scale_notes(cfg: Config) -> list[str]:
    notes = ["Probes are ridge regressions (λ scaled by the sample count) fitted on one set of sequences and scored "
             "on another; the authors score in-sample."]
    if cfg.deep_steps < 20_000:
        notes.append(f"The linear stacks trained {cfg.deep_steps} steps at batch {cfg.deep_batch_size}, far from "
                     "converged; `--scale paper` trains 2–6 layers 20k steps at batch 256 (a GPU setting).")
    notes.append(f"Probe-context claims compare late positions with positions {cfg.d + 1}–{cfg.d + 5} (0-based), "
                 "just after S_{<t} reaches full rank. Before that the preconditioned input is ≈ s_t/λ off the span of "
                 "earlier states, linear in the token itself (R² ≈ 1 at t = 1). A first version compared with "
                 "positions 1–5 and failed for that reason; the window was changed after that run.")
    notes.append("Interpolation is shown two ways: statically (loss along the straight path between the trained and "
                 "compressed products) and as the authors ran it: a fresh model whose heads average their own products "
                 "with the frozen CompressedAlg products, retrained with the same budget as the original.")
    return notes


def median(v) -> float:
    return float(np.median(np.asarray(v)))


def claims(cfg: Config, r: dict[str, Any]) -> list[Claim]:
    src = "von Oswald et al. 2023b §4–5; DESIGN.md §4 S3"
    rows: list[Claim] = []
    deep = r["deep"]
    tail = slice(cfg.seq_len // 2, None)  # late positions: plenty of context
    # "Early" starts once S_{<t} has full rank (t > d). Before that the preconditioned input is ≈ s_t/λ off the span
    # of earlier states, a linear function of the token itself that any layer decodes (R² ≈ 1 at t = 1, measured),
    # which says nothing about preconditioning. The first version of this claim compared with positions 1–5 and
    # failed for that reason.
    early = slice(cfg.d + 1, cfg.d + 6)
    for target, label in (("s_next", "s_{t+1}"), ("preconditioned", "(S_{<t}S_{<t}ᵀ + λI)⁻¹ s_t")):
        # Per seed: R² of the last layer minus the first layer's, at late positions, for the deepest model.
        r2 = np.asarray([p[target] for p in deep[-1]["probes"]])  # [seed, site, T]
        depth_gain = r2[:, -1, tail].mean(-1) - r2[:, 1, tail].mean(-1)
        context_gain = r2[:, -1, tail].mean(-1) - r2[:, -1, early].mean(-1)
        rows.append(measured_claim(
            f"probe R² for {label} rises with depth: last layer minus first layer (held out, 0-based positions ≥ "
            f"{cfg.seq_len // 2}, {deep[-1]['layers']}-layer model)", src,
            "decodability rises with layer depth (Fig. 3)", depth_gain, "> 0 for the median seed",
            median(depth_gain) > 0, "per seed: " + ", ".join(f"{v:+.3f}" for v in depth_gain)))
        rows.append(measured_claim(
            f"probe R² for {label} rises with context: last layer, 0-based positions ≥ {cfg.seq_len // 2} minus "
            f"{cfg.d + 1}–{cfg.d + 5} (just after the state Gram matrix has full rank)", src,
            "decodability rises with context length (Fig. 3)", context_gain, "> 0 for the median seed",
            median(context_gain) > 0, "per seed: " + ", ".join(f"{v:+.3f}" for v in context_gain)))

    rel = {p["layers"]: np.abs(np.asarray(p["compressed_loss"]) / np.asarray(p["loss"]) - 1) for p in deep}
    shallow = "; ".join(f"{k} layers: median {median(v):.2%}" for k, v in rel.items() if k < COMPRESSED_MIN_DEPTH)
    claim_text = "CompressedAlg-d (16 + 16 block scalars per head) has the trained loss: |L_compressed / L_trained − 1|"
    threshold = f"median ≤ {COMPRESSED_TOLERANCE:.0%} with ≤ {COMPRESSED_PARAM_SHARE:.0%} of the parameters"
    paper = "within a few % using 0.5% of the parameters (6 layers)"
    deep_parts = [p for p in deep if p["layers"] >= COMPRESSED_MIN_DEPTH]
    if not deep_parts:
        rows.append(Claim(claim_text, src, paper, None, None, threshold, "NOT RUN",
                          f"the claim is for ≥ {COMPRESSED_MIN_DEPTH} layers; depths = {cfg.depths}. {shallow}"))
    for part in deep_parts:
        share = part["compressed_params"] / part["params"]
        v = rel[part["layers"]]
        rows.append(measured_claim(
            f"{claim_text}, {part['layers']} layers ({part['compressed_params']} scalars = {share:.2%} of "
            f"{part['params']} parameters)", src, paper, v, threshold,
            bool(median(v) <= COMPRESSED_TOLERANCE and share <= COMPRESSED_PARAM_SHARE),
            "per seed: " + ", ".join(f"{x:.2%}" for x in v) + (f"; shallower, for reference: {shallow}" if shallow else ""),
            unit="%"))

    top = deep[-1]
    if "retrained" in top:
        rel_retrained = np.asarray(top["retrained"]["loss"]) / np.asarray(top["loss"]) - 1
        rows.append(measured_claim(
            f"a fresh {top['layers']}-layer model whose heads average their own products with the frozen "
            "CompressedAlg products trains to the trained model's loss with the same budget: L_retrained / "
            "L_trained − 1", src, "the interpolated model matches the trained one (the compressed heads carry the "
            "algorithm)", rel_retrained, f"median ≤ +{COMPRESSED_TOLERANCE:.0%}",
            median(rel_retrained) <= COMPRESSED_TOLERANCE,
            "per seed: " + ", ".join(f"{v:+.2%}" for v in rel_retrained), unit="%"))

    raw = r["raw"]
    r2_prev = np.asarray([np.mean(np.asarray(s["s_t-1"])[1:]) for s in raw["r2"]])
    sens = np.asarray(raw["sensitivity"])
    rows.append(measured_claim(
        f"mesa dataset: s_{{t−1}} is decodable from layer 1 of the raw-token model ({raw['model']}): held-out R², "
        "mean over positions ≥ 1", src, "layer 1 copies the previous token (R² > 0.9)", r2_prev,
        f"median > {COPY_R2}", median(r2_prev) > COPY_R2,
        "per seed: " + ", ".join(f"{v:.3f}" for v in r2_prev) + "; layer-1 sensitivity (own, previous, mean other) "
        "per seed: " + "; ".join(", ".join(f"{x:.3g}" for x in s) for s in sens)))

    n = r["neumann"]
    depths = np.asarray(n["depths"])
    needed = []
    for errs_n, errs_s in zip(n["neumann"], n["newton"]):
        hit_n = depths[np.asarray(errs_n) <= TARGET_ERROR]
        hit_s = depths[np.asarray(errs_s) <= TARGET_ERROR]
        needed.append((int(hit_s[0]) if hit_s.size else None, int(hit_n[0]) if hit_n.size else None))
    # Where term by term never reaches the target, its depth is above the largest one tried.
    ratios = [s / (t if t is not None else depths.max() + 1) for s, t in needed if s is not None]
    ok = len(ratios) == len(needed) and max(ratios) <= DEPTH_RATIO
    rows.append(Claim(
        f"squaring (Newton–Schulz LSA) reaches error {TARGET_ERROR:g} with far fewer layers than the term-by-term "
        "Neumann LSA on the task's Gram matrices: largest depth ratio over prefix lengths", src,
        "depth O(log log 1/ε) instead of O(κ log 1/ε)", max(ratios) if ratios else None, None,
        f"≤ {DEPTH_RATIO:.2f} at every prefix length", "PASS" if ok else "FAIL",
        "; ".join(f"t = {p} (κ ≈ {k:.3g}): squaring {s} layers, term by term "
                  f"{t if t is not None else f'> {depths.max()}'}" for p, k, (s, t) in
                  zip(n["positions"], n["kappa"], needed))))

    fs = deep[-1]["fewshot"]
    plain = np.asarray([np.mean(f["plain"]) for f in fs])
    eos = np.asarray([np.mean(f["eos"]) for f in fs])
    prefix = np.asarray([np.mean(f["prefix"]) for f in fs])
    rel = eos / plain - 1
    rows.append(measured_claim(
        f"few-shot regression with the {deep[-1]['layers']}-layer dynamics model: tuning one EOS token (model "
        "frozen) lowers the loss against the plain [x, y] format: L_eos / L_plain − 1", src,
        "EOS and prefix tuning improve few-shot learning (§5)", rel, "< 0 for the median seed", median(rel) < 0,
        "per seed: " + ", ".join(f"{v:+.1%}" for v in rel) + "; mean loss per seed plain / eos / prefix: "
        + "; ".join(f"{a:.3f} / {b:.3f} / {c:.3f}" for a, b, c in zip(plain, eos, prefix)), unit="%"))
    return rows


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext):
    return mesa_reverse_figures.draw(cfg, results, ctx)
