"""Losses shared by training, evaluation and the studies."""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from mesalab.models.hooks import Intervention
from mesalab.models.run import predict
from mesalab.tasks.base import Batch


def half_mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """½·(ŷ − y)² averaged over everything: the loss of scalar predictions (e.g. at the regression query)."""
    return jnp.mean(0.5 * (pred - target) ** 2)


def masked_half_mse(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """½‖pred − target‖² summed over output coordinates, averaged over the positions where mask = 1.

    This is the loss of both anchors: von Oswald et al. 2023 use ½·(ŷ − y)² at the query, and the mesa paper
    Σ(pred − target)² / (2·B·T) over all positions (reference/mesa.md §1.3, §2.2).
    """
    err = 0.5 * jnp.sum((pred - target) ** 2, axis=-1)
    return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def per_position_half_mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """[pos] ½‖pred − target‖², averaged over the batch (for per-position loss curves)."""
    return jnp.mean(0.5 * jnp.sum((pred - target) ** 2, axis=-1), axis=0)


def prediction_loss(model, batch: Batch, interventions: Mapping[str, Intervention] | None = None) -> jax.Array:
    """The model's read-out against the batch targets under the loss mask."""
    return masked_half_mse(predict(model, batch.inputs, interventions=interventions), batch.targets, batch.loss_mask)


def last_position_loss(model, batch: Batch, interventions: Mapping[str, Intervention] | None = None) -> jax.Array:
    """`prediction_loss` for tasks whose loss mask holds only the last position (e.g. a regression query).

    Without interventions it computes the last layer for the query row alone; the value is the same.
    """
    if interventions:
        return prediction_loss(model, batch, interventions)
    pred = jax.vmap(model.predict_last)(batch.inputs)
    return jnp.mean(0.5 * jnp.sum((pred - batch.targets[:, -1]) ** 2, axis=-1))


def masked_cross_entropy(logits: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax cross-entropy of logits [..., pos, classes] against one-hot (or soft) targets, averaged over the
    positions where mask = 1 — the loss of the classification and copying tasks (Reddy 2024)."""
    nll = -jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def masked_accuracy(logits: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Share of masked positions whose arg-max logit is the target's arg-max class."""
    hit = (jnp.argmax(logits, axis=-1) == jnp.argmax(target, axis=-1)).astype(logits.dtype)
    return jnp.sum(hit * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def classification_loss(model, batch: Batch, interventions: Mapping[str, Intervention] | None = None) -> jax.Array:
    """Cross-entropy of the read-out logits against the batch's one-hot targets under the loss mask."""
    return masked_cross_entropy(predict(model, batch.inputs, interventions=interventions), batch.targets,
                                batch.loss_mask)


def last_position_classification_loss(model, batch: Batch,
                                       interventions: Mapping[str, Intervention] | None = None) -> jax.Array:
    """`classification_loss` for tasks scored at the last position only (computing that row alone)."""
    if interventions:
        return classification_loss(model, batch, interventions)
    logits = jax.vmap(model.predict_last)(batch.inputs)
    return masked_cross_entropy(logits, batch.targets[:, -1], jnp.ones(logits.shape[:1], logits.dtype))


def default_loss(task) -> Callable[..., jax.Array]:
    """The loss the engine uses unless told otherwise: cross-entropy for tasks whose `loss_kind` is
    "cross_entropy", else ½·MSE; in the query-only form when the task trains only the last position."""
    last = getattr(task, "loss_positions", "masked") == "last"
    if getattr(task, "loss_kind", "squared_error") == "cross_entropy":
        return last_position_classification_loss if last else classification_loss
    return last_position_loss if last else prediction_loss
