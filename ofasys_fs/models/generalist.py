"""GeneralistModel: the OFA-style encoder-decoder over instruction pieces (docs/design.md §8)."""
from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any, Iterable, Optional, Union

import torch
from torch import nn

from ..contracts import Adaptor, AdaptorOutput, Model, OutputAdaptor
from ..guidance import HIDDEN_ROWS
from ..registry import CRITERION_REGISTRY, build_adaptor, register_model
from ..tokenizer import PAD
from .archs import config_with_overrides, resolve_config
from .config import ModelConfig
from .coordinates import coordinate_code
from .cpu_linear import Linear, linear
from .ctc_head import CTCHead, ctc_phone_range
from .layers import (
    DecoderLayer,
    EncoderLayer,
    ScaledTokenEmbedding,
    activation_dtype,
    causal_bias,
    drop_path_rates,
    padding_bias,
    recording_weights,
    run_layer,
)
from .positions import SequencePositions, decoupled_position_bias, positions_clamped
from .task_batch_norm import add_task_statistics

SOURCE_STATE = "source"  # incremental-state key of the per-source caches (one row per encoder row)
POSITION_STATE = "positions"  # incremental-state key of the decoder's position biases (shared by all rows)
POSITION_BLOCK = 32  # decoder positions whose biases incremental decoding computes at once
NOT_BUILT = (
    "GeneralistModel has no weights yet: call model.build(vocab, adaptor_names) (the Trainer does this once it "
    "knows the vocabulary and the tasks), or create it with GeneralistModel.from_config(cfg, vocab_size, adaptor_names)"
)


@dataclasses.dataclass
class EncoderOut:
    """What the decoder reads from the encoder."""

    x: torch.Tensor  # [B, S, D] after the final layer norm (+ the position vectors with memory_positions)
    padding_mask: torch.Tensor  # [B, S], True where padded
    position_embeddings: torch.Tensor  # [B, S, D] (may be a view of one row), keys of the cross-attention position bias
    spans: tuple = ()  # (adaptor name, start, end) of each piece along S, in encoder order
    grids: tuple = ()  # per span: (rows, cols) of an image feature grid (AdaptorOutput.grid), else None

    def index_select(self, new_order: torch.Tensor) -> "EncoderOut":
        """Rows picked (and repeated) by `new_order`, e.g. to expand a batch into beams."""
        tensors = ("x", "padding_mask", "position_embeddings")
        return dataclasses.replace(self, **{name: getattr(self, name).index_select(0, new_order) for name in tensors})


def check_adaptor_output(name: str, out: AdaptorOutput, batch_size: int, cfg: ModelConfig) -> None:
    """Raise ValueError naming the adaptor when its output breaks the AdaptorOutput contract."""
    length = out.embeddings.size(1) if out.embeddings.dim() == 3 else -1
    expected = {
        "embeddings": (out.embeddings.shape, (batch_size, length, cfg.embed_dim)),
        "padding_mask": (out.padding_mask.shape, (batch_size, length)),
    }
    if out.position_embeddings is not None:
        expected["position_embeddings"] = (out.position_embeddings.shape[1:], (length, cfg.embed_dim))
    if out.rel_bias is not None:
        layers = (cfg.encoder_layers,) if out.rel_bias.dim() == 5 else ()
        expected["rel_bias"] = (out.rel_bias.shape[:-4] + out.rel_bias.shape[-3:],
                                layers + (cfg.attention_heads, length, length))
    for field, (got, want) in expected.items():
        if tuple(got) != tuple(want):
            raise ValueError(f'adaptor "{name}": {field} has shape {list(got)}, expected {list(want)}')


def hidden(padding_mask: torch.Tensor, rows: Optional[torch.Tensor]) -> torch.Tensor:
    """A piece's padding mask [B, S] with every position of `rows` [B] (a piece's HIDDEN_ROWS) masked too."""
    return padding_mask if rows is None else padding_mask | rows.to(padding_mask.device)[:, None]


class Encoder(nn.Module):
    """Runs each piece's adaptor, concatenates the pieces along time and applies the encoder layers."""

    def __init__(self, cfg: ModelConfig, adaptors: dict[str, Adaptor]):
        super().__init__()
        self.cfg = cfg
        self.adaptors = nn.ModuleDict(adaptors)
        self.pos_q = Linear(cfg.embed_dim, cfg.embed_dim)
        self.pos_k = Linear(cfg.embed_dim, cfg.embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg, rate) for rate in drop_path_rates(cfg.drop_path_rate, cfg.encoder_layers)
        )
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        # how much of each position vector the output carries (memory_positions): 0 at first, learnt
        self.memory_position_scale = nn.Parameter(torch.zeros(cfg.embed_dim)) if cfg.memory_positions else None

    def run_adaptor(self, index: int, piece: dict) -> tuple[str, AdaptorOutput]:
        name = piece.get("adaptor") or self.cfg.image_adaptor
        if name not in self.adaptors:
            raise KeyError(
                f'encoder piece {index} ({piece.get("modality", "?")}) needs adaptor "{name}", which this model '
                f"was not built with (built: {', '.join(self.adaptors) or 'none'}); include it in adaptor_names "
                f"when building the model"
            )
        return name, self.adaptors[name](piece)

    def forward(self, pieces: list[dict]) -> EncoderOut:
        """Encoder pieces (docs/internals.md sample format) -> EncoderOut."""
        if not pieces:
            raise ValueError("encoder: the sample has no encoder pieces")
        order = range(len(pieces))
        if self.cfg.image_first:
            order = sorted(order, key=lambda index: pieces[index].get("modality") != "IMAGE")
        named_outputs = [self.run_adaptor(index, pieces[index]) for index in order]
        batch_size = named_outputs[0][1].embeddings.size(0)
        for name, out in named_outputs:
            check_adaptor_output(name, out, batch_size, self.cfg)
        outputs = [out for _, out in named_outputs]
        bounds = list(itertools.accumulate((out.embeddings.size(1) for out in outputs), initial=0))
        spans = tuple((name, start, end) for (name, _), start, end in zip(named_outputs, bounds, bounds[1:]))
        x = torch.cat([out.embeddings for out in outputs], dim=1)
        padding_mask = torch.cat([hidden(out.padding_mask, pieces[index].get(HIDDEN_ROWS))
                                  for out, index in zip(outputs, order)], dim=1)
        rows = self.bias_rows(outputs, batch_size)
        positions = torch.cat([
            out.embeddings.new_zeros((rows,) + out.embeddings.shape[1:]) if out.position_embeddings is None
            else out.position_embeddings.expand(rows, -1, -1) for out in outputs
        ], dim=1)
        if self.cfg.entangle_position_embedding:
            x = x + positions
        dtype = activation_dtype(x)
        position_bias = decoupled_position_bias(self.pos_q(positions), self.pos_k(positions), self.cfg.attention_heads)
        position_bias, padding = position_bias.to(dtype), padding_bias(padding_mask, dtype)
        x = self.dropout(x)
        checkpointing = self.cfg.checkpoint_activations and self.training and torch.is_grad_enabled()
        for index, layer in enumerate(self.layers):
            x = run_layer(layer, checkpointing, x, (self.layer_bias(position_bias, outputs, index), padding))
        memory = self.layer_norm(x)
        if self.memory_position_scale is not None:
            memory = memory + (positions * self.memory_position_scale).to(memory.dtype)
        return EncoderOut(memory, padding_mask, positions.expand(batch_size, -1, -1), spans,
                          tuple(out.grid for out in outputs))

    @staticmethod
    def bias_rows(outputs: list[AdaptorOutput], batch_size: int) -> int:
        """1 when every piece's position vectors and relative bias are shared by all rows, else batch_size: the
        rows of the encoder's position bias, which then stays apart from the per-row padding bias (attention
        adds both without a batch-expanded copy of the position bias or of its gradient)."""
        shared = all((out.position_embeddings is None or out.position_embeddings.size(0) == 1)
                     and (out.rel_bias is None or out.rel_bias.size(-4) == 1) for out in outputs)
        return 1 if shared else batch_size

    @staticmethod
    def layer_bias(base_bias: torch.Tensor, outputs: list[AdaptorOutput], layer: int) -> torch.Tensor:
        """The base bias plus each piece's relative bias on its diagonal block (cross-piece pairs get none)."""
        bias = base_bias.clone()
        start = 0
        for out in outputs:
            end = start + out.embeddings.size(1)
            if out.rel_bias is not None:
                relative = out.rel_bias[layer] if out.rel_bias.dim() == 5 else out.rel_bias
                bias[:, :, start:end, start:end] += relative.to(bias.dtype)
            start = end
        return bias


class Decoder(nn.Module):
    """Decoder with cross-attention: over tokens (logits through the shared embedding table) or over the input
    embeddings of a continuous output's adaptor (hidden states); causal unless asked otherwise.

    With an `incremental_state` dict it runs only the positions not yet cached (normally the last
    one), appends their self-attention K/V, computes cross-attention K/V once per source, and
    returns the last position only.
    """

    def __init__(self, cfg: ModelConfig, embed_tokens: nn.Embedding, position_adaptors: Iterable[Adaptor] = (),
                 continuous_outputs: bool = False):
        super().__init__()
        dim = cfg.embed_dim
        self.cfg = cfg
        self.tokens = ScaledTokenEmbedding(embed_tokens, cfg.scale_embedding)
        # adaptors that add position vectors to the decoder's tokens (image_code); registered in the encoder
        self.position_adaptors = tuple(position_adaptors)
        self.positions = SequencePositions(cfg.max_target_positions, cfg, cfg.decoder_layers,
                                           owner="decoder (max_target_positions)")
        self.self_pos_q, self.self_pos_k = Linear(dim, dim), Linear(dim, dim)
        self.cross_pos_q, self.cross_pos_k = Linear(dim, dim), Linear(dim, dim)
        self.dropout = nn.Dropout(cfg.dropout)
        rates = drop_path_rates(cfg.drop_path_rate, cfg.decoder_layers)
        self.layers = nn.ModuleList(DecoderLayer(cfg, rate) for rate in rates)
        # the layers that continuous outputs (an output adaptor's embeddings) run; None: they run self.layers
        self.continuous_layers: Optional[nn.ModuleList] = None
        # their cross-attention position projections; None: they use cross_pos_q/k
        self.continuous_cross_pos_q: Optional[nn.Module] = None
        self.continuous_cross_pos_k: Optional[nn.Module] = None
        if continuous_outputs and cfg.continuous_decoder_layers:
            self.continuous_layers = nn.ModuleList(DecoderLayer(cfg, rate) for rate in rates)
            if cfg.continuous_cross_positions:  # they start as the shared ones, as when fine-tuning
                self.continuous_cross_pos_q = copy.deepcopy(self.cross_pos_q)
                self.continuous_cross_pos_k = copy.deepcopy(self.cross_pos_k)
                # the longest source (valid positions) a continuous output trained on; 0: not known (a checkpoint
                # written before it), nothing is clamped then
                self.register_buffer("continuous_source_positions", torch.zeros((), dtype=torch.long))
                self.register_load_state_dict_pre_hook(without_source_positions_recorded)
        self.layer_norm = nn.LayerNorm(dim)
        # logits over the shared embedding table; models/quantize.py puts an int8 copy here (None: the table)
        self.output_projection: Optional[nn.Module] = None

    @staticmethod
    def cached_steps(incremental_state: Optional[dict], length: int) -> int:
        """How many leading positions the incremental state already holds (0 without a state)."""
        if incremental_state is None or "layers.0.self_attn" not in incremental_state:
            return 0
        steps = incremental_state["layers.0.self_attn"]["k"].size(2)
        if steps >= length:
            raise ValueError(
                f"incremental decoding: the state already holds {steps} positions but prev_output_tokens has "
                f"{length}; pass the whole prefix, one token longer per call (use a fresh state per batch)"
            )
        return steps

    def forward(self, prev_output: torch.Tensor, encoder_out: EncoderOut, incremental_state: Optional[dict] = None,
                causal: bool = True, padding_mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict]:
        """Token ids [B, T] -> (logits [B, T, V], {"hidden": ...}); input embeddings [B, T, D] from an output
        adaptor -> (hidden states [B, T, D], {"hidden": ...}). Incremental: the last position only ([B, 1, .]).

        `causal=False` lets every position see every other (no incremental state then); `padding_mask` [B, T]
        (True = pad) hides padded decoder positions as keys (needed only without the causal mask).
        """
        if not causal and incremental_state is not None:
            raise ValueError("decoder: incremental decoding needs causal=True")
        embedded = prev_output.is_floating_point()
        length = prev_output.size(1)
        start = self.cached_steps(incremental_state, length)
        if embedded:
            x = prev_output[:, start:]
        else:
            raw_positions = None
            if self.cfg.entangle_decoder_positions:
                raw_positions = self.positions.table(self.positions.positions(length, prev_output.device)[start:])
            x = self.tokens(prev_output[:, start:], raw_positions)
            for adaptor in self.position_adaptors:
                x = x + adaptor.decoder_positions(prev_output[:, start:], start).to(x.dtype)
        if self.cfg.entangle_position_embedding:
            x = x + self.positions.embeddings(self.positions.positions(length, x.device)[start:])
        x = self.dropout(x)
        dtype = activation_dtype(x)
        cross_q, cross_k = self.cross_position_projections(continuous=embedded)
        if incremental_state is None:
            self_bias, cross_queries = self.position_biases(0, length, dtype, x.device, cross_q, causal)
        else:
            self_bias, cross_queries = self.cached_position_biases(incremental_state, start, length, dtype, x.device,
                                                                   cross_q)
        self_padding = () if padding_mask is None else (padding_bias(padding_mask, dtype),)
        source_state = incremental_state.setdefault(SOURCE_STATE, {}) if incremental_state is not None else None
        cross_biases = self.cross_biases(cross_queries, encoder_out, source_state, dtype, cross_k)
        checkpointing = (self.cfg.checkpoint_activations and self.training and torch.is_grad_enabled()
                         and incremental_state is None)
        layers = self.layers_for(continuous=embedded)
        for index, layer in enumerate(layers):
            caches = self.layer_caches(incremental_state, source_state, index)
            x = run_layer(layer, checkpointing, x, (self_bias[index], *self_padding), encoder_out.x, cross_biases,
                          *caches)
        x = self.layer_norm(x)
        if incremental_state is not None:
            x = x[:, -1:]
        if embedded:
            return x, {"hidden": x}
        if self.output_projection is not None:
            return self.output_projection(x), {"hidden": x}
        return linear(x, self.tokens.embed_tokens.weight), {"hidden": x}

    def layers_for(self, continuous: bool) -> nn.ModuleList:
        """The layers a continuous output (an adaptor's embeddings) or the token outputs run."""
        return self.continuous_layers if continuous and self.continuous_layers is not None else self.layers

    def cross_position_projections(self, continuous: bool) -> tuple[nn.Module, nn.Module]:
        """The query and key projections of the cross-attention position bias that a continuous output or the
        token outputs use."""
        if continuous and self.continuous_cross_pos_q is not None:
            return self.continuous_cross_pos_q, self.continuous_cross_pos_k
        return self.cross_pos_q, self.cross_pos_k

    def position_biases(self, start: int, end: int, dtype: torch.dtype, device: torch.device, cross_q: nn.Module,
                        causal: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """For queries at positions start..end-1 over keys 0..end-1: the self-attention bias of every layer
        (decoupled absolute + relative, + causal) [layers, 1, H, Tq, Tk], and the query position vectors of the
        cross-attention bias [1, Tq, D] projected by `cross_q`."""
        positions = self.positions.positions(end, device)
        vectors = self.positions.embeddings(positions)[None]
        queries = vectors[:, start:]
        absolute = decoupled_position_bias(self.self_pos_q(queries), self.self_pos_k(vectors), self.cfg.attention_heads)
        absolute = absolute.to(dtype)
        if causal:
            absolute = absolute + causal_bias(end, dtype, device)[start:]
        relative = self.positions.relative_bias(positions[start:], positions).to(dtype)
        return relative + absolute, cross_q(queries)

    def cached_position_biases(self, incremental_state: dict, start: int, length: int, dtype: torch.dtype,
                               device: torch.device, cross_q: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """position_biases for queries start..length-1, sliced from a block computed for the next
        POSITION_BLOCK positions at once (the same for every hypothesis)."""
        block = incremental_state.get(POSITION_STATE)
        if block is None or length > block["end"]:
            self.positions.positions(length, device)  # the error for a too long sequence
            end = min(max(length, start + POSITION_BLOCK), self.cfg.max_target_positions)
            self_bias, cross_queries = self.position_biases(start, end, dtype, device, cross_q)
            block = incremental_state[POSITION_STATE] = {"start": start, "end": end, "self": self_bias,
                                                         "cross": cross_queries}
        rows = slice(start - block["start"], length - block["start"])
        return block["self"][:, :, :, rows, :length], block["cross"][:, rows]

    def cross_biases(self, query_vectors: torch.Tensor, encoder_out: EncoderOut, source_state: Optional[dict],
                     dtype: torch.dtype, cross_k: nn.Module) -> tuple[torch.Tensor, ...]:
        """The decoupled position bias between decoder positions (projected query vectors [1, Tq, D]) and encoder
        positions, and the source padding, each broadcastable to [R, H, Tq, S] with one row per encoder row (a
        source's beams share it); summed once per step when decoding step by step.

        Without a state, position vectors that every row shares (the encoder's expanded view of one row) are
        projected once, and the position bias stays one row: attention adds it apart from the padding."""
        if source_state is not None and "cross_pos_k" in source_state:
            keys, padding = source_state["cross_pos_k"], source_state["padding"]
        else:
            positions = self.key_positions(encoder_out, cross_k)
            if source_state is None and positions.stride(0) == 0:
                positions = positions[:1]
            keys = cross_k(positions)
            padding = padding_bias(encoder_out.padding_mask, dtype)
            if source_state is not None:
                source_state.update(cross_pos_k=keys, padding=padding)
        bias = decoupled_position_bias(query_vectors, keys, self.cfg.attention_heads).to(dtype)
        return (bias, padding) if source_state is None else (bias + padding,)

    def key_positions(self, encoder_out: EncoderOut, cross_k: nn.Module) -> torch.Tensor:
        """The encoder position vectors that `cross_k` projects. A continuous output's own projections learn only
        the source positions of its training rows: training records the longest source, and decoding gives every
        position past it the vector of the last one trained (speech never fires its stop on a key it never saw;
        docs/multitask.md, session 18)."""
        positions = encoder_out.position_embeddings
        if cross_k is not self.continuous_cross_pos_k:
            return positions
        if self.training:
            longest = (~encoder_out.padding_mask).sum(1).max()
            self.continuous_source_positions.copy_(torch.maximum(self.continuous_source_positions, longest))
            return positions
        return positions_clamped(positions, int(self.continuous_source_positions))

    @staticmethod
    def layer_caches(incremental_state: Optional[dict], source_state: Optional[dict],
                     layer: int) -> tuple[Optional[dict], Optional[dict]]:
        if incremental_state is None:
            return None, None
        return (incremental_state.setdefault(f"layers.{layer}.self_attn", {}),
                source_state.setdefault(f"layers.{layer}.cross_attn", {}))


@register_model("generalist", dataclass=ModelConfig)
class GeneralistModel(Model):
    """The generalist encoder-decoder (docs/design.md §8).

    `GeneralistModel(arch=..., **config)` only holds the resolved config; `build(vocab, adaptor_names)`
    creates the weights once the vocabulary and the tasks' adaptors are known.
    """

    def __init__(self, cfg: Optional[ModelConfig] = None, vocab_size: Optional[int] = None,
                 adaptor_names: Optional[Iterable[Optional[str]]] = None, **overrides):
        super().__init__()
        self.cfg = resolve_config(config_with_overrides(cfg, overrides))
        self.vocab_size: Optional[int] = None
        self.adaptor_names: tuple[str, ...] = ()
        if vocab_size is not None:
            self.build(vocab_size, adaptor_names if adaptor_names is not None else ("text",))
        elif adaptor_names is not None:
            raise TypeError("GeneralistModel: adaptor_names given without vocab_size; pass both or neither")

    @classmethod
    def from_config(cls, cfg: ModelConfig, vocab_size: int,
                    adaptor_names: Iterable[Optional[str]] = ("text",)) -> "GeneralistModel":
        """A built model in one call."""
        return cls(cfg, vocab_size, adaptor_names)

    @property
    def is_built(self) -> bool:
        return "encoder" in self._modules

    def adaptors_for(self, templates: Iterable[Any]) -> set[str]:
        """The adaptors that instructions (or templates) need in this model: their encoder adaptor names (an
        unnamed image adaptor resolved to the arch's) and the adaptor of a non-text decoder slot."""
        names = set()
        for template in templates:
            names |= {name or self.cfg.image_adaptor for name in template.adaptor_names}
            names |= {slot.adaptor for slot in template.decoder if not slot.text_like}
        return names

    def build_for_tasks(self, vocab: object, tasks: Iterable[Any]) -> "GeneralistModel":
        """`build` with the adaptors the tasks' templates need, and a CTC head when ctc_head is unset and a task's
        criterion trains one (an untrained head would only cost memory and DDP's unused-parameter search)."""
        tasks = list(tasks)
        if self.cfg.ctc_head is None:
            self.cfg.ctc_head = any(getattr(CRITERION_REGISTRY.get(task.criterion).cls, "uses_ctc_head", False)
                                    for task in tasks)
        self.build(vocab, self.adaptors_for(template for task in tasks for template in task.templates))
        add_task_statistics(self, [task.name for task in tasks])
        return self

    def build(self, vocab: Union[int, object], adaptor_names: Iterable[Optional[str]] = ("text",)) -> "GeneralistModel":
        """Create all weights: the shared embedding table, one adaptor per name, encoder and decoder.

        `vocab` is a size or a Vocabulary (its len and .pad are used). An adaptor name None means the
        arch's image adaptor. Every adaptor is built now so that the optimizer sees all parameters.
        """
        if self.is_built:
            raise RuntimeError("GeneralistModel.build: the model is already built")
        vocab_size = vocab if isinstance(vocab, int) else len(vocab)
        padding_idx = getattr(vocab, "pad", PAD)  # a bare size: the fixed <pad> id
        if vocab_size <= padding_idx:
            raise ValueError(f"GeneralistModel.build: vocab_size={vocab_size} must exceed the <pad> id {padding_idx}")
        names = sorted({name or self.cfg.image_adaptor for name in adaptor_names})
        for name in names:
            if "." in name:
                raise ValueError(f'GeneralistModel.build: adaptor name "{name}" must not contain "."')
        phones = ctc_phone_range(self.cfg, vocab, names, vocab_size)
        if phones is not None:
            self.cfg = dataclasses.replace(self.cfg, ctc_phone_start=phones.start, ctc_num_phones=len(phones))
        dim = self.cfg.embed_dim
        self.embed_tokens = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        nn.init.normal_(self.embed_tokens.weight, std=dim**-0.5)
        with torch.no_grad():
            self.embed_tokens.weight[padding_idx].zero_()
            bins = vocab.range("bin") if hasattr(vocab, "range") else range(0)
            if len(bins) >= 2:  # both halves: the column code (x) and the row code (y) of the image grid
                half = coordinate_code(torch.linspace(0, 1, len(bins)), dim // 2)
                self.embed_tokens.weight[bins.start:bins.stop] = torch.cat([half, half], dim=1)[:, :dim]
        codes = vocab.range("code") if "image_code" in names and hasattr(vocab, "range") else None
        if codes is not None:
            self.cfg = dataclasses.replace(self.cfg, image_code_range=(codes.start, codes.stop))
        adaptors = {name: build_adaptor(name, self.cfg, self.embed_tokens) for name in names}
        outputs = {name: adaptor for name, adaptor in adaptors.items() if isinstance(adaptor, OutputAdaptor)}
        self.encoder = Encoder(self.cfg, {name: adaptor for name, adaptor in adaptors.items() if name not in outputs})
        self.decoder = Decoder(self.cfg, self.embed_tokens,
                               [adaptor for adaptor in adaptors.values() if hasattr(adaptor, "decoder_positions")],
                               continuous_outputs=bool(outputs))
        if outputs:  # a model without continuous outputs keeps exactly its former modules
            self.output_adaptors = nn.ModuleDict(outputs)
        if phones is not None:
            self.ctc_head = CTCHead(dim, phones)
        self.vocab_size, self.adaptor_names = vocab_size, tuple(names)
        return self

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("encoder", "decoder", "embed_tokens"):
                raise AttributeError(NOT_BUILT) from None
            raise

    def forward(self, sample: dict, ctc: bool = False, cross_attention: bool = False) -> tuple[Any, dict]:
        """Teacher-forced logits [B, T, V] for sample["net_input"], or for a continuous output (a "decoder" piece
        in net_input) its adaptor's predictions dict; extras: encoder_out, hidden, with `ctc` the CTC head's
        "ctc_logits" [B, S, 1 + P] over all encoder positions and its "ctc_phones" range, and with
        `cross_attention` the cross-attention weights of every decoder layer run ("cross_attention": [B, H, T, S]
        each, with their gradient)."""
        if not self.is_built:
            raise RuntimeError(NOT_BUILT)
        net_input = sample["net_input"]
        encoder_out = self.encoder(net_input["encoder"])
        layers = self.decoder.layers_for(continuous="decoder" in net_input)
        attentions = [layer.cross_attn.block for layer in layers] if cross_attention else []
        with recording_weights(attentions) as recorded:
            if "decoder" in net_input:
                logits, extra = self.decode_features(net_input["decoder"], encoder_out)
            else:
                logits, extra = self.decoder(net_input["prev_output_tokens"], encoder_out)
        if cross_attention:
            extra["cross_attention"] = [calls[0] for calls in recorded]
        extra["encoder_out"] = encoder_out
        if ctc:
            if "ctc_head" not in self._modules:
                raise RuntimeError("GeneralistModel was built without a CTC head: build it with the audio_fbank "
                                   "adaptor and a Vocabulary that has phones, or set model config ctc_head=True")
            extra.update(ctc_logits=self.ctc_head(encoder_out.x), ctc_phones=self.ctc_head.phones)
        return logits, extra

    def output_adaptor(self, piece: dict) -> OutputAdaptor:
        """The output adaptor of a collated decoder piece (its "adaptor" name)."""
        name = piece.get("adaptor")
        adaptors = self._modules.get("output_adaptors") or {}
        if name not in adaptors:
            raise KeyError(f'the decoder piece ({piece.get("modality", "?")}) needs the output adaptor "{name}", which '
                           f"this model was not built with (output adaptors: {', '.join(adaptors) or 'none'}); "
                           f"include it in adaptor_names when building the model")
        return adaptors[name]

    def decode_features(self, piece: dict, encoder_out: EncoderOut,
                        incremental_state: Optional[dict] = None) -> tuple[dict, dict]:
        """A continuous output: the piece's adaptor embeds the decoder inputs, the decoder runs over them (causal
        or not, as the adaptor says) and the adaptor projects its hidden states -> (predictions, {"hidden"})."""
        adaptor = self.output_adaptor(piece)
        inputs = adaptor(piece)
        padding = None if adaptor.causal else inputs.padding_mask
        hidden, extra = self.decoder(inputs.embeddings, encoder_out, incremental_state, adaptor.causal, padding)
        return adaptor.project(hidden, piece), extra

    @staticmethod
    def reorder_encoder_out(encoder_out: EncoderOut, new_order: torch.Tensor) -> EncoderOut:
        """The encoder output for rows `new_order` (beam expansion / finished rows leaving)."""
        return encoder_out.index_select(new_order)

    @staticmethod
    def reorder_incremental_state(incremental_state: dict, new_order: torch.Tensor) -> None:
        """Reorder the decoder state in place to hypotheses `new_order` (indices of the current ones).

        The per-source part (cross-attention K/V, encoder position keys, padding) keeps one row per
        source while each group of new hypotheses extends the hypotheses of one source, as beam search
        does; only the sources are then reordered (not at all when they stay in place).
        """
        if "layers.0.self_attn" not in incremental_state:
            return
        hypotheses = incremental_state["layers.0.self_attn"]["k"].size(0)
        source_state = incremental_state[SOURCE_STATE]
        source_order = new_source_order(new_order, hypotheses, source_state["cross_pos_k"].size(0))
        if source_order is not None:
            index_state(source_state, source_order)
        for key, value in incremental_state.items():
            if key not in (SOURCE_STATE, POSITION_STATE):
                index_state(value, new_order)


def new_source_order(new_order: torch.Tensor, hypotheses: int, sources: int) -> Optional[torch.Tensor]:
    """Rows of the per-source state for hypotheses `new_order`: one per group of new hypotheses when every
    group comes from one source (groups as wide as before, or every source widened alike, as beam search
    does after its first step), else one per hypothesis; None when the sources stay as they are."""
    groups = hypotheses // sources
    source = torch.div(new_order, groups, rounding_mode="floor")
    for size in sorted({groups, new_order.numel() // sources}, reverse=True):  # the widest groups share most
        if not size or new_order.numel() % size:
            continue
        per_group = source.view(-1, size)
        if not bool((per_group == per_group[:, :1]).all()):
            continue
        order = per_group[:, 0]
        if order.numel() == sources and bool((order == torch.arange(sources, device=order.device)).all()):
            return None
        return order
    return source


def index_state(state: dict, order: torch.Tensor) -> None:
    """index_select(0, order) on every tensor of a nested dict, in place."""
    for key, value in state.items():
        if isinstance(value, dict):
            index_state(value, order)
        else:
            state[key] = value.index_select(0, order)


CONTINUOUS_COPIES = {"decoder.continuous_layers.": "decoder.layers.",
                     "decoder.continuous_cross_pos_q.": "decoder.cross_pos_q.",
                     "decoder.continuous_cross_pos_k.": "decoder.cross_pos_k."}


def without_source_positions_recorded(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: a checkpoint written before the decoder recorded continuous_source_positions
    loads with 0 there (nothing clamped)."""
    state_dict.setdefault(prefix + "continuous_source_positions", torch.zeros((), dtype=torch.long))


def with_continuous_layers(weights: dict, model_weights: dict) -> dict:
    """`weights` plus, for the continuous outputs' decoder layers and position projections the model has and
    `weights` lack (a checkpoint trained without them, e.g. OFA's), copies of the shared ones: fine-tuning starts
    them from there."""
    copies = {key: weights[shared + key[len(prefix):]] for key in model_weights
              for prefix, shared in CONTINUOUS_COPIES.items()
              if key.startswith(prefix) and key not in weights and shared + key[len(prefix):] in weights}
    return {**weights, **{key: value.clone() for key, value in copies.items()}}


def count_parameters(arch: str, *, vocab_size: int, adaptor_names: Iterable[Optional[str]] = ("text",)) -> int:
    """Number of distinct trainable parameters of an arch (built on the meta device: no memory used)."""
    with torch.device("meta"):
        model = GeneralistModel.from_config(ModelConfig(arch=arch), vocab_size, adaptor_names)
    return sum(parameter.numel() for parameter in model.parameters())
