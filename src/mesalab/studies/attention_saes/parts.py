"""Parts of the attention-saes study: the frozen S6 models (trained here, with checkpoints for the timeline, or
loaded from an `induction-circuits` run), the SAE ensembles on their hook_z with every metric and the feature
families of the SAE the findings read, and the SAEs on training checkpoints (the timeline).

Layers and heads are 0-indexed as in S6 (reference/induction.md §3.3): layer 1 holds the induction heads.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis import sae_metrics as sm
from mesalab.analysis.sae import (
    SAE,
    chunk_program,
    init_state,
    site_activations,
    train_saes,
    unit_rows,
)
from mesalab.analysis.sae_io import write_ensemble
from mesalab.config import ConfigError
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer
from mesalab.store import load_run
from mesalab.studies.attention_saes import families as fam
from mesalab.studies.attention_saes.config import S6_KEYS, Config
from mesalab.studies.induction_circuits.claims import WELL_ABOVE
from mesalab.studies.induction_circuits.config import model_of, training
from mesalab.studies.induction_circuits.parts import (
    head_analysis,
    phase_steps,
    step_metrics,
)
from mesalab.studies.protocol import RunContext
from mesalab.train import Trainer
from mesalab.train.engine import member_of

EVAL_SEED = 7007
L0_MAX = 20  # the L0 band of Kissane's GPT-2 Small SAEs that recover ≥ 80% (issue 19, finding 1)


def with_run_keys(cfg: Config) -> Config:
    """With from_run, the S6 keys of that run (its task and model are what the SAEs read); else cfg."""
    if not cfg.from_run:
        return cfg
    try:
        run = load_run(cfg.from_run)
    except FileNotFoundError as e:
        raise ConfigError(f"Config.from_run = {cfg.from_run!r} is not allowed; expected a run folder ({e})",
                          owner="Config", field="from_run", value=cfg.from_run) from None
    if run.meta.get("study") != "induction-circuits" or not (run.path / "checkpoints" / "none-all").exists():
        raise ConfigError(f"Config.from_run = {cfg.from_run!r} is not allowed; expected an induction-circuits run "
                          f"with its unclamped all-heads models (checkpoints/none-all); it is a "
                          f"{run.meta.get('study')} run", owner="Config", field="from_run", value=cfg.from_run)
    return dataclasses.replace(cfg, **{k: getattr(run.config, k) for k in S6_KEYS})


def base_models(cfg: Config, ctx: RunContext) -> tuple[Any, dict[str, Any], list[tuple[int, Any]]]:
    """(final models [seed axis], their training record, [(step, models)] at every timeline checkpoint).

    Trained here: one ensemble of `seeds`, continued from its own checkpoint at each timeline step (the engine's
    resume gives the numbers of an uninterrupted run). With from_run: that run's unclamped all-heads models."""
    s6cfg = cfg.s6()
    task = s6cfg.task()
    if cfg.from_run:
        run = load_run(cfg.from_run)
        models = run.models("none-all")
        if ctx.untrained:  # the null: models built as the run's, at initialisation (ctx.fit trains nothing there)
            models = ctx.fit(Trainer(task, functools.partial(Transformer, model_of(s6cfg, task)),
                                     training(s6cfg, 1)), run.config.seeds, "base").models
        part = run.results["conditions"]["none/all"]
        return models, {"from_run": cfg.from_run, "steps": part["steps"], "test_loss": part["curves"]["test_loss"],
                        "phase": part["phase"]}, []
    # S6's measures at every chunk boundary (accuracy, per-head induction strength and previous-token score); its
    # held-out evaluators are left out: the SAEs read the training distribution
    metrics = functools.partial(step_metrics, task, {})
    trainer = Trainer(task, functools.partial(Transformer, model_of(s6cfg, task)),
                      training(s6cfg, cfg.steps, cfg.chunk_steps), metrics_fn=metrics)
    every = cfg.timeline_every
    stops = list(range(every, cfg.steps, every)) if every and not ctx.untrained else []
    staged = dataclasses.replace(ctx, resume=True, metrics=[])  # each stage continues the last one's checkpoint
    checkpoints = []
    for stop in stops:
        checkpoints.append((stop, staged.fit(trainer, cfg.seeds, "base", stop_after=stop).models))
    res = staged.fit(trainer, cfg.seeds, "base")
    ctx.add_metrics(res.history, "base")
    checkpoints.append((cfg.steps, res.models))
    if not every:
        checkpoints = []
    loss = res.curve("test_loss")
    return res.models, {"from_run": "", "steps": loss["steps"], "time": loss["time"], "test_loss": loss["values"],
                        "phase": phase_steps(loss["steps"], loss["values"]), "seconds": res.seconds}, checkpoints


def marked_heads(cfg: Config, models: Any) -> dict[str, Any]:
    """S6's head analysis of the final models; a layer-1 head is marked as an induction head when, kept alone (the
    others' values ablated), it scores ≥ WELL_ABOVE (S6's `several_heads` rule)."""
    heads = head_analysis(cfg.s6(), models)
    return {**heads, "marked": [[h for h, a in enumerate(acc) if a >= WELL_ABOVE] for acc in heads["keep_one"]]}


@functools.partial(jax.jit, static_argnums=(1, 2))
def _mean_norm(model: Any, site: str, task: Any, key: jax.Array) -> jax.Array:
    return jnp.mean(jnp.linalg.norm(site_activations(model, site, task.sample(key, 256).inputs), axis=-1))


def mean_norm(model: Any, site: str, task: Any) -> float:
    """E‖x‖ of a site's activations (the λ scale; config.py)."""
    return float(_mean_norm(model, site, task, jax.random.PRNGKey(EVAL_SEED + 3)))


@functools.partial(jax.jit, static_argnums=(2,))
def _dfa_all(model: Any, sae: SAE, layer: int, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(activations [B, q, F], DFA summed over heads [B, q, s, F]) of every feature (sae_metrics.dfa_by_source)."""
    pre = f"blocks.{layer}.attn."
    _, cache = run_model(model, inputs, sites=(pre + "hook_pattern", pre + "hook_v", pre + "hook_z"))
    dfa = sm.dfa_by_source(cache[pre + "hook_pattern"], cache[pre + "hook_v"], sae.W_enc)
    z = cache[pre + "hook_z"]
    return sae.encode(z.reshape(*z.shape[:2], -1)), dfa


# loss recovered of one SAE on one batch, compiled once per shape (the control and every timeline checkpoint)
_loss_recovered = eqx.filter_jit(sm.loss_recovered)


def feature_families(cfg: Config, model: Any, sae: SAE, layer: int, task: Any) -> np.ndarray:
    """[F] family index (families.FAMILIES; −1 dead) of every feature, on a fixed analysis batch."""
    batch = task.sample(jax.random.PRNGKey(EVAL_SEED + 1), cfg.eval_batch)
    acts, dfa = (np.asarray(a) for a in _dfa_all(model, sae, layer, batch.inputs))
    labels = fam.label_identity(batch.info["context_labels"], batch.info["label"])
    return fam.classify(fam.feature_stats(acts, dfa, batch.info["match_position"], labels))


def random_decoder(sae: SAE, key: jax.Array) -> SAE:
    """The control with the dictionary removed: the same encoder and biases, decoder rows random unit vectors."""
    return eqx.tree_at(lambda s: s.W_dec, sae, unit_rows(jax.random.normal(key, sae.W_dec.shape)))


def chosen_member(l0: np.ndarray, recovered: np.ndarray) -> int:
    """The SAE the findings read: the best loss recovered among the members with L0 ≤ L0_MAX (the sparsest member
    when none is that sparse)."""
    ok = np.flatnonzero(l0 <= L0_MAX)
    if ok.size == 0:
        return int(np.argmin(l0))
    return int(ok[np.argmax(np.nan_to_num(recovered[ok], nan=-np.inf))])


def sae_layer(cfg: Config, ctx: RunContext, model: Any, seed: int, layer: int, marked: list[int]) -> dict[str, Any]:
    """One ensemble of SAEs (l1_scales × sae_seeds) on one model's layer hook_z: trained, evaluated, its chosen
    member's features classified and attributed to heads; written in SAELens's layout in the trained run."""
    task = cfg.s6().task()
    site = f"blocks.{layer}.attn.hook_z"
    norm = mean_norm(model, site, task)
    sae_cfg = cfg.sae(layer, norm)
    result = train_saes(sae_cfg, model, task, data_seed=seed)
    hist = result.history
    ctx.add_metrics(hist[["step", "member", "seed", "metric", "value"]].assign(
        metric="sae_" + hist.metric + f"_layer{layer}_model{seed}"), "saes")
    ev = {k: np.asarray(v, float) for k, v in sm.evaluate(model, result.saes, task, site,
                                                          key=jax.random.PRNGKey(EVAL_SEED), batch_size=cfg.eval_batch).items()}
    ablation = ev["loss_zero"] - ev["loss_clean"]
    best = chosen_member(ev["l0"], ev["loss_recovered"])
    sae = result.member(best)
    control = _loss_recovered(model, random_decoder(sae, jax.random.PRNGKey(EVAL_SEED + 2)),
                                task.sample(jax.random.PRNGKey(EVAL_SEED), cfg.eval_batch), site, task=task)
    family = feature_families(cfg, model, sae, layer, task)
    attribution = np.asarray(sm.head_attribution(sae.W_dec, cfg.n_heads))
    rand_att = np.asarray(sm.head_attribution(random_decoder(sae, jax.random.PRNGKey(EVAL_SEED + 2)).W_dec,
                                              cfg.n_heads))
    if not ctx.untrained:
        write_ensemble(ctx.dir / "saes" / f"model{seed}-layer{layer}", result.saes, site, result.members,
                       model_name=f"mesalab/induction-circuits seed {seed}", context_size=task.seq_len,
                       extra={"x_norm": norm, "l1_scales": list(cfg.l1_scales), "steps": sae_cfg.steps})
    return {
        "x_norm": norm, "members": [[c, l1, s] for c, (l1, s) in zip(
            [c for c in cfg.l1_scales for _ in range(cfg.sae_seeds)], result.members)],
        **{k: v.tolist() for k, v in ev.items()}, "ablation_cost": ablation.tolist(),
        "chosen": best, "random_decoder_recovered": float(control["loss_recovered"]),
        "random_decoder_single_head": float(np.mean(rand_att.max(1) >= fam.SINGLE_HEAD)),
        "family": family.tolist(), "attribution_max": attribution.max(1).tolist(),
        "attribution": np.round(attribution[family >= 0], 4).tolist(),  # live features × heads
        **fam.head_summary(family, attribution, marked), "seconds": result.seconds,
    }


def timeline(cfg: Config, checkpoints: list[tuple[int, Any]], seeds: int) -> dict[str, Any]:
    """SAEs on every checkpoint of every base seed, one vmapped ensemble over checkpoints per seed (one scale c =
    timeline_scale, λ = c·E‖x‖ of each checkpoint's own hook_z as everywhere in the study; one SAE seed; no
    resampling: a resampling is a lax.cond, which a vmap would turn into running it at every step). Per seed and
    checkpoint: the induction family's share of live features, the number of live features, the loss recovered."""
    task = cfg.s6().task()
    site = f"blocks.{cfg.layer}.attn.hook_z"
    steps = [s for s, _ in checkpoints]
    out = {"steps": steps, "induction_share": [], "live": [], "loss_recovered": [], "x_norm": []}
    sae_cfg = cfg.sae(cfg.layer, 1.0, timeline=True)  # λ = timeline_scale here; scaled per checkpoint below
    program = chunk_program(sae_cfg, task, sae_cfg.steps)
    for i in range(seeds):
        models = [member_of(m, i) for _, m in checkpoints]
        norms = [mean_norm(m, site, task) for m in models]
        stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a) if eqx.is_array(a[0]) else a[0], *models)
        state = init_state(sae_cfg, cfg.n_heads * cfg.d_head, data_seed=i)
        n = len(models)
        states = jax.tree_util.tree_map(lambda a, n=n: jnp.broadcast_to(a, (n, *a.shape)), state)
        states["l1"] = states["l1"] * jnp.asarray(norms, jnp.float32)[:, None]
        states, _ = eqx.filter_vmap(program)(states, stacked)
        shares, live, rec = [], [], []
        for c, model in enumerate(models):
            sae = jax.tree_util.tree_map(lambda a, c=c: a[c, 0], states["sae"])
            family = feature_families(cfg, model, sae, cfg.layer, task)
            n_live = int((family >= 0).sum())
            shares.append(float((family == 0).sum() / n_live) if n_live else float("nan"))
            live.append(n_live)
            batch = task.sample(jax.random.PRNGKey(EVAL_SEED), cfg.eval_batch)
            rec.append(float(_loss_recovered(model, sae, batch, site, task=task)["loss_recovered"]))
        out["induction_share"].append(shares)
        out["live"].append(live)
        out["loss_recovered"].append(rec)
        out["x_norm"].append(norms)
    return out


def saes(cfg: Config, ctx: RunContext, models: Any, heads: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every layer's SAE ensemble on every base model: {layer: [per seed]}."""
    n = jax.tree_util.tree_leaves(eqx.filter(models, eqx.is_array))[0].shape[0]
    return {str(layer): [sae_layer(cfg, ctx, member_of(models, i), i, layer, heads["marked"][i] if layer == 1 else [])
                         for i in range(n)] for layer in cfg.sae_layers}


def trivial_loss() -> float:
    """ln 2: picking one of the two context labels at random (S6's chance level)."""
    return math.log(2)

