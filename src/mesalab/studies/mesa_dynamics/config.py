"""Configuration and presets of the mesa-dynamics study (reference/mesa.md §2.2–2.5 for the authors' settings)."""

from __future__ import annotations

from mesalab.config import (
    NONNEGATIVE, NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, config, inner_keys, one_of, require, same_keys,
)
from mesalab.studies.mesa_dynamics.models import model_setup, parse


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

    RULES = {
        **dict.fromkeys(("d", "seq_len", "seeds", "n_test", "chunk_steps", "eval_batch_size", "schedule_steps",
                         "default_steps", "default_batch_size", "one_layer_steps", "one_layer_batch_size",
                         "compare_steps", "compare_batch_size"), POSITIVE_INT),
        **dict.fromkeys(("warmup_steps", "compare_warmup_steps"), NONNEGATIVE_INT),
        **dict.fromkeys(("lr", "mesa_lr", "full_lr", "lsq_lambda", "init_std"), POSITIVE),
        **dict.fromkeys(("noise", "end_lr", "weight_decay"), NONNEGATIVE),
        "grad_clip": NONNEGATIVE.note("0: no clipping"),
        "act_clip": NONNEGATIVE.note("0: no clipping"),
        "lsq_pairs": one_of("all", "one_fewer"),
        "mesa_method": one_of("scan", "solve", "chunked"),
    }

    def __post_init__(self) -> None:
        for name in self.models:
            parse(name)
        require(self, "models", any(parse(m)[0] == "mesa" for m in self.models) or not self.models,
                "a tuple of model names that includes a mesa model (e.g. 'mesa-1'), or empty")
        # Every task and model the study trains, as training.setup builds them, their errors in this config's keys.
        keys = {**same_keys("d", "seq_len", "noise", "mesa_method"), "TransformerConfig.clip": "act_clip",
                "TransformerConfig.init_scale": "init_std"}
        for name in ("linear-2", "linear-1-masked", *self.models):
            with inner_keys(self, keys, where=f"the model {name!r}"):
                model_setup(name, self.d, self.seq_len, self.noise, self.init_std, self.act_clip, self.mesa_method)


PRESETS = {
    "smoke": Config(seeds=3, n_test=256, chunk_steps=20, eval_batch_size=64, default_steps=40, default_batch_size=32,
                    one_layer_steps=40, one_layer_batch_size=32, models=("mesa-1", "linear-2"), compare_steps=40,
                    compare_batch_size=16, compare_warmup_steps=10, warmup_steps=10, seq_len=20),
    # About 16 minutes on 2 idle cores, 7 of them for the default model at the authors' setting (2,500 steps at batch
    # 256 of their 20k-step schedule). The 1-layer model trains 1,500 steps at batch 256 of the same schedule. The
    # comparison group trains on a short schedule that ends at 600 steps (batch 64, warm-up 100), where the full
    # transformer needs a higher rate (3e-3) to leave its plateau.
    "cpu": Config(one_layer_steps=1500, compare_steps=600, compare_warmup_steps=100, full_lr=3e-3),
    # The paper's sizes (reference/mesa.md §2.4–2.5): every model at batch 256 over the full 20k-step schedule, the
    # deep stacks up to 6 layers. A GPU setting: about 10 h of the 2-core CPU per seed and model.
    "paper": Config(seeds=5, default_steps=20_000, one_layer_steps=20_000,
                    models=("mesa-1", "softmax+mesa", "linear-2", "softmax-2", "linear-4", "softmax-4", "linear-6",
                            "softmax-6", "full-2", "full-4"),
                    compare_steps=20_000, compare_batch_size=256, compare_warmup_steps=1000),
}
