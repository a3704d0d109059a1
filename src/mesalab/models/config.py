"""The configuration of a transformer stack (attention-only toy models up to full pre-LN transformers)."""

from __future__ import annotations

from mesalab.config import ConfigError, config, require, require_choice, require_nonnegative, require_positive

ATTENTION_KINDS = ("linear", "softmax", "mesa")
MESA_METHODS = ("scan", "solve", "chunked")
# Sequence mixers that are not learned attention (Akyürek et al. 2024's comparison; models.recurrent, models.ssm,
# models.ngram). "ngram<k>" (k >= 1) is the hard-wired n-gram layer of order k.
MIXER_KINDS = ("lstm", "ssm")
NGRAM_KINDS = "'ngram<k>' with k >= 1 (e.g. 'ngram2')"
SSM_SCANS = ("fused", "sequential", "parallel")
LAYER_KINDS_ALLOWED = ", ".join(repr(k) for k in ATTENTION_KINDS + MIXER_KINDS) + " or " + NGRAM_KINDS


def ngram_order(kind: str) -> int | None:
    """k for a layer kind "ngram<k>" (k >= 1, no leading zero), else None."""
    if not (isinstance(kind, str) and kind.startswith("ngram") and kind[5:].isascii() and kind[5:].isdigit()
            and kind[5] != "0"):
        return None
    return int(kind[5:])


def is_attention(kind: str) -> bool:
    """Whether a layer kind is learned attention (queries, keys, values: the kinds rope, mesa_* and keys_from
    concern), as opposed to an LSTM, SSM or n-gram mixer."""
    return kind in ATTENTION_KINDS


@config
class TransformerConfig:
    """A transformer stack.

    d_model:       residual-stream width (the token width when there is no input embedding).
    attention:     "linear", "softmax" or "mesa", or a tuple with one kind per layer (e.g. ("softmax", "mesa")).
                   Besides attention, a layer's sequence mixer may be "lstm" (models.recurrent), "ssm" (a Mamba-style
                   selective scan, models.ssm) or "ngram<k>" (the hard-wired n-gram layer of order k >= 1,
                   models.ngram), as Akyürek et al. 2024 compare (reference/icll.md §1.5, §1.7); e.g.
                   ("ngram2", "lstm", "lstm") inserts an n-gram layer into an LSTM. These need causal=True,
                   keys_from="all" and no rotary positions; n_heads, d_head, scale_scores, out_proj and the mesa
                   settings apply to attention layers only, and init / init_scale neither (each mixer keeps its
                   reference's initialisation). The Block's field `attn` holds whichever mixer the layer has.
    ssm_state, ssm_expand, ssm_conv: the "ssm" layers' state size N per channel (Mamba's d_state, 16), inner
                   width factor (expand, 2) and causal convolution width (d_conv, 4); the authors' Mamba defaults.
    ssm_scan:      how "ssm" layers run their recurrence: "fused" (the default: a lax.scan that never stores the
                   states, fastest), "sequential" (lax.scan over stored states) or "parallel" (lax.associative_scan);
                   the same outputs (models.ssm).
    mesa_ridge:    the initial ridge λ of every mesa head (> 0; learned as log λ per head).
    mesa_method:   how mesa layers solve their systems: "scan" (Sherman–Morrison with the memory-light backward),
                   "solve" (exact reference) or "chunked" (chunkwise conjugate gradient); see `models.mesa`.
    causal:        each position attends only to itself and earlier positions.
    keys_from:     "all" tokens, or "context": every token's keys and values exclude the last (query) token, as in
                   von Oswald et al. 2023, where the query reads the context but never itself.
    scale_scores:  where the 1/√d_head factor applies: "softmax" layers only, "all" layers or "none".
    out_proj:      attention layers have an output projection W_O (False: the heads' concatenated outputs are added
                   to the stream directly, as in Reddy 2024; needs n_heads · d_head = d_model).
    classifier_layers: ReLU layers (width d_model, He-normal weights, one scalar bias each) applied to the final
                   stream before the unembedding: Reddy 2024's "deep classifier" that makes in-weights learning
                   feasible (reference/induction.md §1.3). Sites classifier.{i}.hook_post.
    d_mlp:         hidden width of the MLP after each attention (0: attention-only).
    layer_norm:    pre-LayerNorm before attention and MLP, and after the last block.
    clip:          clip the residual stream to ±clip after every block (0: off).
    d_in, d_out:   add a linear input embedding from d_in / an unembedding to d_out (None: identity).
    d_input_mlp:   hidden width of a residual MLP on the embedded tokens before the first block, h ← h + MLP(h)
                   (activation mlp_activation; sites input_mlp.hook_pre / hook_post): von Oswald et al. 2023 §5's
                   input MLP, a learned feature map for non-linear regression (0: none).
    pos_embedding: "none", "learned" (needs max_len) or "sinusoidal", added to the embedded tokens; or
                   "concat_sinusoidal": a sinusoidal code of width pos_dim concatenated to them, as von Oswald et al.
                   do for interleaved tokens (the tokens then fill the first d_model − pos_dim features); or "rope":
                   rotary position embeddings (Su et al. 2021) applied to every head's queries and keys, nothing added
                   to the stream (sites attn.hook_rot_q / hook_rot_k after the rotation; needs an even d_head and
                   linear or softmax layers). Pairs of adjacent features (2j, 2j + 1) rotate by the angle
                   p·rope_base^(−2j/d_head) at position p, as in Singh et al. 2024's `apply_rope`
                   (reference/induction.md §3.2); TransformerLens rotates the two halves by default instead.
    init:          "normal" (std = init_scale) or "fan_in" (std = sqrt(init_scale / fan_in)).
    residual_scale: multiplies each attention update (the "dampening" of an iterated layer).
    readout_start, readout_size, readout_sign: the prediction is readout_sign · out[..., start:start+size]
                   (von Oswald's LSA reads −(y slot of the query): start = d, size = 1, sign = −1).
    """

    d_model: int = 40
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 20
    attention: tuple[str, ...] | str = "linear"
    causal: bool = True
    keys_from: str = "all"
    scale_scores: str = "softmax"
    out_proj: bool = True
    classifier_layers: int = 0
    d_mlp: int = 0
    mlp_activation: str = "gelu"
    layer_norm: bool = False
    clip: float = 0.0
    d_in: int | None = None
    d_out: int | None = None
    d_input_mlp: int = 0
    pos_embedding: str = "none"
    pos_dim: int = 0
    max_len: int = 0
    rope_base: float = 10000.0
    mesa_ridge: float = 1.0
    mesa_method: str = "scan"
    ssm_state: int = 16
    ssm_expand: int = 2
    ssm_conv: int = 4
    ssm_scan: str = "fused"
    init: str = "normal"
    init_scale: float = 0.02
    residual_scale: float = 1.0
    readout_start: int = 0
    readout_size: int | None = None
    readout_sign: float = 1.0

    def __post_init__(self) -> None:
        for f in ("d_model", "n_layers", "n_heads", "d_head"):
            v = getattr(self, f)
            require(self, f, isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer")
        if not isinstance(self.attention, str) and len(self.attention) != self.n_layers:
            raise ConfigError(
                f"TransformerConfig.attention has {len(self.attention)} entries but n_layers = {self.n_layers}; "
                "give one kind for all layers or one per layer"
            )
        for kind in self.layer_kinds:
            if kind not in ATTENTION_KINDS + MIXER_KINDS and ngram_order(kind) is None:
                raise ConfigError(
                    f"TransformerConfig.attention = {kind!r} is not allowed; expected one of {LAYER_KINDS_ALLOWED}"
                )
        mixers = sorted({k for k in self.layer_kinds if not is_attention(k)})
        if mixers:
            which = f"when a layer is {' or '.join(map(repr, mixers))}"
            require(self, "causal", self.causal is True,
                    f"True {which} (the lstm, ssm and n-gram layers are causal by construction)")
            require(self, "keys_from", self.keys_from == "all",
                    f"'all' {which} (the lstm, ssm and n-gram layers read every token)")
            require(self, "pos_embedding", self.pos_embedding != "rope",
                    f"not 'rope' {which} (rotary positions rotate attention queries and keys, which these layers "
                    "do not have)")
        if "ssm" in self.layer_kinds:
            for f in ("ssm_state", "ssm_expand", "ssm_conv"):
                v = getattr(self, f)
                require(self, f, isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer")
            require_choice(self, "ssm_scan", SSM_SCANS)
        require_choice(self, "keys_from", ("all", "context"))
        if "mesa" in self.layer_kinds:
            require(self, "causal", self.causal is True, "True when a layer is 'mesa' (the mesa layer is causal)")
            require(self, "keys_from", self.keys_from == "all", "'all' when a layer is 'mesa'")
            require_positive(self, "mesa_ridge")
            require_choice(self, "mesa_method", MESA_METHODS)
        require_choice(self, "scale_scores", ("softmax", "all", "none"))
        require(self, "out_proj", self.out_proj or self.n_heads * self.d_head == self.d_model,
                f"True unless n_heads · d_head = d_model (here {self.n_heads} · {self.d_head} vs {self.d_model})")
        require(self, "classifier_layers", isinstance(self.classifier_layers, int) and self.classifier_layers >= 0,
                "an integer >= 0 (0: no classifier)")
        require(self, "d_mlp", isinstance(self.d_mlp, int) and self.d_mlp >= 0, "an integer >= 0 (0: no MLP)")
        require_choice(self, "mlp_activation", ("gelu", "relu"))
        require(self, "d_input_mlp", isinstance(self.d_input_mlp, int) and self.d_input_mlp >= 0,
                "an integer >= 0 (0: no input MLP)")
        require_nonnegative(self, "clip")
        for f in ("d_in", "d_out"):
            v = getattr(self, f)
            require(self, f, v is None or (isinstance(v, int) and v > 0), "None or a positive integer")
        require_choice(self, "pos_embedding", ("none", "learned", "sinusoidal", "concat_sinusoidal", "rope"))
        if self.pos_embedding == "rope":
            require(self, "d_head", self.d_head % 2 == 0,
                    "an even integer with pos_embedding 'rope' (features rotate in pairs)")
            require(self, "attention", "mesa" not in self.layer_kinds,
                    "'linear' or 'softmax' layers with pos_embedding 'rope' (mesa layers take no rotary positions)")
            require_positive(self, "rope_base")
        concat = self.pos_embedding == "concat_sinusoidal"
        require(self, "pos_dim", (0 < self.pos_dim < self.d_model) if concat else self.pos_dim == 0,
                f"an integer in [1, {self.d_model - 1}] with 'concat_sinusoidal' positions, else 0")
        require(
            self, "max_len", self.pos_embedding != "learned" or self.max_len > 0,
            "a positive integer (the longest sequence) when pos_embedding is 'learned'",
        )
        require_choice(self, "init", ("normal", "fan_in"))
        require_positive(self, "init_scale")
        out_width = self.d_out if self.d_out is not None else self.d_model
        require(self, "readout_start", 0 <= self.readout_start < out_width, f"an integer in [0, {out_width})")
        size = self.readout_size if self.readout_size is not None else out_width - self.readout_start
        require(
            self, "readout_size", 0 < size <= out_width - self.readout_start,
            f"None or an integer in [1, {out_width - self.readout_start}]",
        )

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        """The attention kind of each layer."""
        return (self.attention,) * self.n_layers if isinstance(self.attention, str) else tuple(self.attention)

    @property
    def output_width(self) -> int:
        return self.d_out if self.d_out is not None else self.d_model

    @property
    def prediction_slice(self) -> slice:
        size = self.readout_size if self.readout_size is not None else self.output_width - self.readout_start
        return slice(self.readout_start, self.readout_start + size)

    @property
    def input_width(self) -> int:
        return self.d_in if self.d_in is not None else self.token_width

    @property
    def token_width(self) -> int:
        """Residual features that carry the (embedded) token; the rest hold a concatenated position code."""
        return self.d_model - self.pos_dim
