"""The models of the mesa-dynamics study, by name (von Oswald et al. 2023b; reference/mesa.md §2.3–2.5).

    linear-L        L causal linear-attention layers, 4 heads, key 20, constructed tokens [0, s_t, s_t, s_{t−1}]
    softmax-L       the same with softmax attention (scores scaled by 1/√20)
    mesa-L          L mesa layers (4 heads, key 20, ridge λ learned per head from λ = 1)
    softmax+mesa    a softmax layer, then a mesa layer (the hybrid of the paper)
    full-L          a full transformer on raw tokens s_t: linear embedding to 40 with learned positions, L pre-LN
                    blocks of softmax attention + GELU MLP (width 160), final LayerNorm and unembedding
    linear-1-masked the 1-layer model of the paper's reverse engineering: 2 heads, key 20, tokens [0, 0, s_t, s_{t−1}]
    softmax-raw-L   attention-only softmax on raw tokens s_t: linear embedding to 40 with learned positions and
                    pre-LayerNorm, no MLP; its first layer must copy s_{t−1} itself (the "mesa dataset" of the paper).
                    Without LayerNorm (measured, batch 64, 3k steps) layer 1 copied s_{t−1} only at positions < 16.

Attention-only models use the authors' init N(0, 2e-4²) and clip the residual stream to ±1.5 after every layer;
the full transformer uses GPT-2's N(0, 0.02²) and no clipping (LayerNorm keeps its scale). Measured while building
the study (batch 64, 600 steps): fan-in init at scale 1.0 stayed on the zero-predictor plateau (1.66), N(0, 0.02²)
reached 0.70 at lr 1e-3 and 0.51 at lr 3e-3.
"""

from __future__ import annotations

import re

from mesalab.config import ConfigError
from mesalab.models.config import TransformerConfig
from mesalab.tasks.dynamics import DynamicsConfig

PATTERNS = ("linear-L", "softmax-L", "mesa-L", "full-L", "softmax-raw-L", "softmax+mesa", "linear-1-masked")
D_MODEL, HEADS, KEY = 40, 4, 20


def parse(name: str) -> tuple[str, int]:
    """(kind, layers) of a model name; raises ConfigError naming the allowed patterns."""
    if name == "softmax+mesa":
        return "hybrid", 2
    if name == "linear-1-masked":
        return "masked", 1
    m = re.fullmatch(r"(linear|softmax|mesa|full|softmax-raw)-([1-9][0-9]?)", name)
    if not m:
        raise ConfigError(f"model name {name!r} is not allowed; expected one of {', '.join(PATTERNS)} "
                          "(L a number of layers, e.g. 'linear-4')")
    return m.group(1), int(m.group(2))


def model_setup(name: str, d: int, seq_len: int, noise: float, init_std: float, act_clip: float,
                mesa_method: str = "scan", key_size: int = KEY) -> tuple[DynamicsConfig, TransformerConfig]:
    """The task (token format) and model config of a named model; key_size is the attention-only models' key
    (20 in the paper's default model, 40 in its multi-layer reverse engineering)."""
    kind, layers = parse(name)
    fmt = {"full": "raw", "softmax-raw": "raw", "masked": "constructed_masked"}.get(kind, "constructed")
    task = DynamicsConfig(d=d, seq_len=seq_len, noise=noise, token_format=fmt)
    if kind in ("full", "softmax-raw"):
        full = kind == "full"
        model = TransformerConfig(
            d_model=D_MODEL, n_layers=layers, n_heads=HEADS, d_head=D_MODEL // HEADS, attention="softmax",
            d_mlp=4 * D_MODEL if full else 0, layer_norm=True, d_in=d, d_out=d, pos_embedding="learned",
            max_len=seq_len, init="normal", init_scale=0.02,
        )
        return task, model
    attention = {"linear": "linear", "masked": "linear", "softmax": "softmax", "mesa": "mesa",
                 "hybrid": ("softmax", "mesa")}[kind]
    model = TransformerConfig(
        d_model=4 * d, n_layers=layers, n_heads=2 if kind == "masked" else HEADS, d_head=key_size, attention=attention,
        clip=act_clip, init="normal", init_scale=init_std, readout_size=d, mesa_method=mesa_method,
    )
    return task, model


def parameter_count(model: TransformerConfig) -> int:
    """Trainable parameters of a model built from `model` (counted from its shapes, without building it)."""
    import equinox as eqx
    import jax

    from mesalab.models.transformer import Transformer

    shapes = eqx.filter_eval_shape(Transformer, model, key=jax.random.PRNGKey(0))
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(shapes) if isinstance(x, jax.ShapeDtypeStruct))
