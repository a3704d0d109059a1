"""The training data of a learning curve as one ensemble: REGBENCH prompts (tasks/dfa.py) of which each member uses
only the first `n_use`.

tasks/dfa.py makes the N training prompts of a smaller data set the first N of a larger one (same seed and DFA
ranges), so a sweep over N is one data set of the largest N, and a member with `n_use = N` draws its batches from its
first N prompts. `n_use` is a dynamic field (an ensemble knob, as a noise level): every N and seed of one
architecture train in one compiled program, and seed s starts from the same weights and data keys at every N.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.config import concrete, config, require
from mesalab.tasks import dfa
from mesalab.tasks.base import Batch, sampler


@config(dynamic=("n_use",))
class PrefixTask:
    """data: the REGBENCH config (its training split, n_train = the largest N); n_use: the training prompts this
    member draws from (its first n_use; 1 ≤ n_use ≤ data.n_train)."""

    data: dfa.RegbenchConfig
    n_use: float = 1.0

    def __post_init__(self) -> None:
        require(self, "data", isinstance(self.data, dfa.RegbenchConfig) and self.data.split == "train",
                "a RegbenchConfig of the training split")
        # Plain numbers only: tracers, stacked member arrays and the placeholders jax.jit.lower rebuilds the config
        # with (placement.py lowers the chunk program) are not checked.
        if concrete(self.n_use):
            require(self, "n_use", 1 <= float(self.n_use) <= self.data.n_train,
                    f"a number in [1, data.n_train = {self.data.n_train}]")

    vocab_size = property(lambda self: self.data.vocab_size)
    token_width = target_width = vocab_size
    seq_len = property(lambda self: self.data.seq_len)
    loss_positions = property(lambda self: self.data.loss_positions)
    loss_kind = property(lambda self: self.data.loss_kind)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


@sampler
def sample(cfg: PrefixTask, key: jax.Array, batch_size: int) -> Batch:
    """A batch of prompts drawn uniformly with replacement from the first n_use training prompts (the loss inputs of
    tasks.dfa.sample: one-hot inputs and targets, SEP and PAD targets masked)."""
    tokens = jnp.asarray(dfa.dataset(cfg.data).tokens)
    index = jnp.minimum(jax.random.uniform(key, (batch_size,)) * cfg.n_use, cfg.n_use - 1).astype(jnp.int32)
    return dfa.prompt_batch(tokens[index].astype(jnp.int32), index)
