"""Fitting the few scalars of a hand-written algorithm to tasks (the authors' `pre_train_gd_hps`, which learns η and γ
per layer for GD++; reference/mesa.md §1.4–1.5).

The authors train (η, γ) with Adam on fresh batches. Here that converged badly: GD++'s loss over (η, γ) is a set of
curved valleys whose η grow ~10× per layer, with several local minima. At d = N = 10, x ~ U(±0.5), 2k Adam steps
from plain GD ended at ½·MSE 0.106 / 0.085 / 0.075 / 0.069 for K = 2…5 and 20k steps at 0.105 / 0.055 / 0.041 /
0.036; this fit reaches 0.092 / 0.042 / 0.017 / 0.0063 on 2·10⁵ other tasks (measured while writing it).

It differs from the authors' in four ways, none of which changes the algorithm (gd.py):
- the objective is GD++'s expected loss, which for noise-free tasks depends only on the eigenvalues of the input
  Gram matrices (`gd_plus_plus_expected_loss`): no noise from w or x_q, and each evaluation is elementwise;
- a fixed large sample of those eigenvalues makes it deterministic, so L-BFGS with a zoom line search applies;
- each layer's (η, γ) are measured against the size of its own transformed spectrum (`spectral_params`);
- depth K starts from the fitted depth K − 1 (`starts`), which matched the best of 12 random restarts, K = 2…5.

`fit_gd_plus_plus_adam` fits the same (η, γ) in the authors' way (Adam from the GD construction, batches of 512
tasks), to show the GD++ the paper compared with beside this optimum (the audit's S1-D2).
"""

from __future__ import annotations

import functools
from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mesalab.tasks.regression import RegressionConfig, sample_raw

Params = dict[str, jax.Array]
# The contraction γ_l·μ_l at which the fitted middle layers settle (0.65–0.73 for K = 3…5 at d = N = 10) and the
# smaller one of the first layer (0.18–0.33): a layer added below the new last layer starts at each in turn.
NEW_LAYER_CONTRACTIONS = (0.7, 0.3)


class EigenSample(NamedTuple):
    """Eigenvalues `lam` [P] of the input Gram matrices XᵀX (d × d) of many tasks, with quadrature weights [P]
    (d per task: each task has d eigenvalues)."""

    lam: jax.Array
    weight: jax.Array


def gd_plus_plus_residual(lam: jax.Array, etas, gammas, n_context: int) -> jax.Array:
    """The factor r(λ) by which K GD++ layers leave the error along an eigenvector of XᵀX with eigenvalue λ.

    GD++ (reference/mesa.md §1.4) maps X ← X(I − γ XᵀX) for every token, so XᵀX's eigenvalues evolve alone,
    f ← f(1 − γ f)² (f = λ at the first layer), and each layer's GD step removes the fraction (η/N)·f of the
    remaining error: r(λ) = Π_l (1 − (η_l/N) f_l(λ)). Plain GD (γ = 0) gives (1 − ηλ/N)^K.
    """
    f, r = lam, jnp.ones_like(lam)
    for eta, gamma in zip(jnp.atleast_1d(jnp.asarray(etas)), jnp.atleast_1d(jnp.asarray(gammas))):
        r = r * (1 - (eta / n_context) * f)
        f = f * (1 - gamma * f) ** 2
    return r


def gd_plus_plus_expected_loss(task: RegressionConfig, sample: EigenSample, etas, gammas) -> jax.Array:
    """GD++'s expected ½·MSE at the query over w, x_q and X, from eigenvalues of XᵀX alone.

    With y_i = wᵀx_i, GD++'s implied weights are ŵ = w − V r(Λ) Vᵀ w (XᵀX = VΛVᵀ), so the query error is
    Σ_k r(λ_k)(v_kᵀw)(v_kᵀx_q). Averaging over w ~ N(0, s²I) and x_q with covariance σ²I (σ² = h²/3 for
    U(−h, h)) leaves ½ s² σ² E[Σ_k r(λ_k)²]: no sampling noise from w or x_q, which is what makes the fit of
    rare large eigenvalues (where deep GD++ can blow up) affordable.
    """
    var = task.x_half_width ** 2 / 3.0
    r = gd_plus_plus_residual(sample.lam, etas, gammas, task.n_context)
    return 0.5 * task.w_scale ** 2 * var * jnp.sum(sample.weight * r * r)


def eigen_sample(task: RegressionConfig, n_tasks: int, seed: int, *, bins: int = 16_384, tail: int = 8192,
                 guard: int = 64, chunk: int = 32_768) -> EigenSample:
    """The eigenvalues of XᵀX over `n_tasks` tasks, compressed for a cheap objective: the largest `tail` one by one
    (a deep GD++ contracts the error up to some eigenvalue and amplifies it beyond, so the fit must see the edge of
    the spectrum), the rest averaged in at most `bins` bins of equal count (smooth there).

    Past the largest sampled eigenvalue λ_max the sample says nothing, yet a deep GD++ can amplify the error there
    by 10⁶. Left free, the fit puts that blow-up just past λ_max, and one task in ~10⁶ then costs more than all the
    others (K = 5, d = N = 10, 2¹⁸ tasks: expected ½·MSE 0.006 on the sample, 7·10⁴ on 2²⁰ other tasks). So
    `guard` points share the weight of one more eigenvalue (about what as many new tasks put beyond λ_max), at the
    quantiles of a Gaussian tail past λ_max (bounded inputs: the edge falls off faster than exponentially) whose
    scale is the mean excess of the `tail` largest. An exponential tail cost up to 4% more loss on other tasks.
    """
    @jax.jit
    def eigenvalues(key):
        _, x, _ = sample_raw(task, key, chunk)
        return jnp.linalg.eigvalsh(jnp.einsum("bnd,bne->bde", x[:, :-1], x[:, :-1])).ravel()

    key = jax.random.PRNGKey(seed)
    lam = jnp.sort(jnp.concatenate([eigenvalues(jax.random.fold_in(key, i)) for i in range(-(-n_tasks // chunk))]))
    lam = lam[: n_tasks * task.d]
    tail = min(tail, lam.size // 2)
    bulk, top = lam[: lam.size - tail], lam[lam.size - tail:]
    per_bin = max(bulk.size // bins, 1)
    bulk = bulk[bulk.size % per_bin:].reshape(-1, per_bin)  # drops < per_bin of the smallest eigenvalues
    quantiles = (jnp.arange(guard) + 0.5) / guard
    edge = top[-1] + jnp.mean(top - top[0]) * jnp.sqrt(2.0) * jax.scipy.special.erfinv(quantiles)
    points = jnp.concatenate([bulk.mean(1), top, edge])
    counts = jnp.concatenate([jnp.full((bulk.shape[0],), per_bin), jnp.ones((tail,)),
                              jnp.full((guard,), 1 / max(guard, 1))])
    return EigenSample(points, counts * (task.d / (bulk.size + tail)))


def spectral_params(params: Params, sample: EigenSample, n_context: int) -> tuple[jax.Array, jax.Array]:
    """(η_l, γ_l) from scale-free parameters (log step, contraction) per layer.

    GD++'s input transforms shrink the spectrum layer by layer, so good step sizes grow by ~10× per layer. Measuring
    each layer against μ_l, the mean eigenvalue f_l of its own (transformed) Gram matrix over the sample, keeps every
    parameter O(1): η_l = N·exp(log_step_l)/μ_l (> 0, as a step size should be) and γ_l = contraction_l/μ_l.
    """
    f, etas, gammas = sample.lam, [], []
    for log_step, contraction in zip(params["log_step"], params["contraction"]):
        mu = jnp.sum(sample.weight * f) / jnp.sum(sample.weight)
        etas.append(n_context * jnp.exp(log_step) / mu)
        gammas.append(contraction / mu)
        f = f * (1 - gammas[-1] * f) ** 2
    return jnp.stack(etas), jnp.stack(gammas)


def minimise_lbfgs(f, params, max_steps: int, rtol: float, patience: int):
    """Minimise a deterministic f with L-BFGS (zoom line search). Stops after `max_steps` iterations, or once
    `patience` iterations in a row each lowered f by less than rtol·|f|: one small step is common in a curved
    valley, a run of them means the float32 loss has stopped moving. Returns (params, f(params), iterations)."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def step(carry):
        p, state, value, stalled, i = carry
        v, g = value_and_grad(p, state=state)
        updates, state = opt.update(g, state, p, value=v, grad=g, value_fn=f)
        p = optax.apply_updates(p, updates)
        new = optax.tree_utils.tree_get(state, "value")
        small = (value - new) < rtol * jnp.abs(new)
        return p, state, new, jnp.where(small, stalled + 1, 0), i + 1

    def running(carry):
        *_, value, stalled, i = carry
        return (i < max_steps) & (stalled < patience) & jnp.isfinite(value)

    init = (params, opt.init(params), f(params), jnp.asarray(0), jnp.asarray(0))
    p, _, value, _, i = jax.lax.while_loop(running, step, init)
    return p, value, i


@functools.partial(jax.jit, static_argnames=("task", "max_steps", "rtol", "patience"))
def _fit(params: Params, sample: EigenSample, task: RegressionConfig, max_steps: int, rtol: float, patience: int):
    """L-BFGS on GD++'s expected loss from one start; returns (params, loss), loss = inf if it diverged."""
    def loss(p):
        return gd_plus_plus_expected_loss(task, sample, *spectral_params(p, sample, task.n_context))

    p, value, _ = minimise_lbfgs(loss, params, max_steps, rtol, patience)
    return p, jnp.where(jnp.isfinite(value), value, jnp.inf)


def starts(previous: Params) -> list[Params]:
    """Starts for depth K from the fitted depth K − 1: its layers with the last one given a contraction from
    NEW_LAYER_CONTRACTIONS and a new last layer with the same step; and plain GD at the first layer's step."""
    log_step, contraction = previous["log_step"], previous["contraction"]
    grown = [{"log_step": jnp.append(log_step, log_step[-1]),
              "contraction": jnp.append(contraction.at[-1].set(c), 0.0)} for c in NEW_LAYER_CONTRACTIONS]
    gd = {"log_step": jnp.full((log_step.size + 1,), log_step[0]), "contraction": jnp.zeros((log_step.size + 1,))}
    return grown + [gd]


def one_step_params(sample: EigenSample) -> Params:
    """GD-1 at its optimal η in closed form: E[Σ_k (1 − cλ_k)²] is least at c = η/N = E[Σλ] / E[Σλ²]."""
    c = jnp.sum(sample.weight * sample.lam) / jnp.sum(sample.weight * sample.lam ** 2)
    mu = jnp.sum(sample.weight * sample.lam) / jnp.sum(sample.weight)
    return {"log_step": jnp.log(c * mu)[None], "contraction": jnp.zeros((1,))}


def fit_gd_plus_plus_depths(task: RegressionConfig, depths: Iterable[int], *, steps: int = 1000,
                            n_tasks: int = 262_144, seed: int = 0, rtol: float = 1e-6, patience: int = 10,
                            **sample_options) -> dict[int, tuple[jax.Array, jax.Array]]:
    """Learn GD++'s (η_l, γ_l) for every depth in `depths`, minimising the expected loss over the eigenvalues of
    `n_tasks` tasks drawn with `seed` (noise-free tasks only: the expected loss has no noise term).

    Depth 1 is GD-1 at its optimal η; each deeper fit keeps the best of `starts` from the one above, so it is never
    worse than plain GD at that η. `steps` caps the L-BFGS iterations of each start (a few hundred are typical for
    K ≤ 5). The last layer's γ does not reach the prediction and stays 0. `sample_options` go to `eigen_sample`.
    Returns {K: (etas [K], gammas [K])}. About 10 s for K = 2…5 at d = N = 10 on two CPU cores.
    """
    if task.noise:
        raise ValueError(f"fit_gd_plus_plus_depths: noise={task.noise}, but the expected loss assumes noise=0")
    depths = sorted(set(depths))
    sample = eigen_sample(task, n_tasks, seed, **sample_options)
    best = one_step_params(sample)
    out = {1: spectral_params(best, sample, task.n_context)}
    for layers in range(2, max(depths, default=1) + 1):
        fits = [_fit(p, sample, task, steps, rtol, patience) for p in starts(best)]
        best = min(fits, key=lambda fit: float(fit[1]))[0]
        out[layers] = spectral_params(best, sample, task.n_context)
    return {k: out[k] for k in depths}


def fit_gd_plus_plus(task: RegressionConfig, layers: int, **kwargs) -> tuple[jax.Array, jax.Array]:
    """(etas, gammas) of GD++ with `layers` layers; see `fit_gd_plus_plus_depths` for the method and options."""
    return fit_gd_plus_plus_depths(task, [layers], **kwargs)[layers]



def task_eigenvalues(task: RegressionConfig, n_tasks: int, seed: int, chunk: int = 32_768) -> jax.Array:
    """[n_tasks, d]: the eigenvalues of each task's input Gram matrix XᵀX (context inputs only)."""
    @jax.jit
    def eigenvalues(key):
        _, x, _ = sample_raw(task, key, chunk)
        return jnp.linalg.eigvalsh(jnp.einsum("bnd,bne->bde", x[:, :-1], x[:, :-1]))

    key = jax.random.PRNGKey(seed)
    lam = jnp.concatenate([eigenvalues(jax.random.fold_in(key, i)) for i in range(-(-n_tasks // chunk))])
    return lam[:n_tasks]


@functools.partial(jax.jit, static_argnames=("task", "steps", "batch_size"))
def _adam_gd_plus_plus(task: RegressionConfig, pool: jax.Array, eta0: jax.Array, steps: int, batch_size: int,
                       lr: float, key: jax.Array):
    n = task.n_context
    params = {"p_y": eta0 / n, "gamma": eta0 / n**2}  # the construction's P entries (create_weights(lin_diag=True))
    opt = optax.adam(lr)
    ones = jnp.full((batch_size * task.d,), 1.0 / batch_size)

    def loss(p, k):
        lam = pool[jax.random.randint(k, (batch_size,), 0, pool.shape[0])].ravel()
        return gd_plus_plus_expected_loss(task, EigenSample(lam, ones), p["p_y"] * n, p["gamma"])

    def step(carry, k):
        p, state = carry
        value, g = jax.value_and_grad(loss)(p, k)
        g = {"p_y": g["p_y"], "gamma": g["gamma"].at[-1].set(0.0)}  # the last γ never reaches the prediction
        updates, state = opt.update(g, state, p)
        new = optax.apply_updates(p, updates)
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(new["p_y"])) & jnp.all(jnp.isfinite(new["gamma"]))
        return (jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, p), state), value

    init = {"p_y": params["p_y"], "gamma": params["gamma"].at[-1].set(0.0)}
    (params, _), values = jax.lax.scan(step, (init, opt.init(init)), jax.random.split(key, steps))
    return params["p_y"] * n, params["gamma"], values


@functools.lru_cache(maxsize=8)
def _pool(task: RegressionConfig, n_tasks: int, seed: int) -> jax.Array:
    return task_eigenvalues(task, n_tasks, seed)


def fit_gd_plus_plus_adam(task: RegressionConfig, eta0, *, steps: int = 30_000, batch_size: int = 512,
                          lr: float | None = None, seed: int = 0, n_tasks: int = 65_536) -> tuple[jax.Array, jax.Array]:
    """GD++'s (η_l, γ_l) fitted in the authors' way (`pre_train_gd_hps`, reference/mesa.md §1.4–1.5): Adam on the
    construction's two free entries per layer (P's y entry η_l/N and its x-block −γ_l·I, which their gradient
    manipulation ties to one scalar) on fresh batches of `batch_size` tasks, from the construction at plain GD's
    step `eta0` (one value per layer) with γ = η/N² as `create_weights(lin_diag=True)` writes it; lr 1e-3, halved
    beyond 3 layers; 30k steps at batch 512 in the authors' deep setting.

    One difference, for cost: each batch's loss is GD++'s expected loss given the batch's input Gram spectra
    (drawn from the spectra of `n_tasks` tasks, `task_eigenvalues`), so w and x_q are averaged out rather than
    sampled. A direct Adam loop on sampled tasks took ~1.5 min per depth here (30k steps, shared 2-core CPU) and
    ended at ½·MSE 0.105 / 0.054 / 0.057 / 0.035 for K = 2…5 (measured on 10⁴ validation tasks while writing this).

    This is a weaker optimiser of the same objective than `fit_gd_plus_plus_depths` (see the module docstring),
    kept to show the GD++ the paper compared with. Returns (etas [K], gammas [K])."""
    eta0 = jnp.asarray(eta0, jnp.float32)
    lr = (1e-3 if eta0.shape[0] <= 3 else 5e-4) if lr is None else lr
    if steps == 0:
        return eta0, jnp.zeros_like(eta0)
    etas, gammas, _ = _adam_gd_plus_plus(task, _pool(task, n_tasks, seed), eta0, steps, batch_size, lr,
                                         jax.random.PRNGKey(seed))
    return etas, gammas
