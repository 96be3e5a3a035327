"""ModelConfig: the one declaration of the generalist model's settings (the `model` section of the training
config, the keywords of `GeneralistModel(...)`, and what a checkpoint stores to rebuild the model).

A size left at None is filled by the arch preset (models/archs.py); fields the user sets win. The layer-detail
flags (OFA's extra norms, scalings, position styles, ...) left at None are filled by the arch too, and by the
ofasys_fs values (`CLASSIC_LAYOUT` in models/archs.py) when the arch says nothing about them.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from ..options import at_least, check_fields, fraction, one_of, option, positive

# image_resnet: bottleneck blocks of ResNet stages 1-3 (layer1..layer3) per depth
RESNET_STAGE_BLOCKS = {50: (3, 4, 6), 101: (3, 4, 23), 152: (3, 8, 36)}
POSITION_STYLES = ("ofasys_fs", "ofa")
IMAGE_RESIZE_FILTERS = ("torch", "pil")
PATCH_STEMS = ("linear", "conv")


def even_buckets(value: Optional[int]) -> None:
    """Relative-position tables need an even bucket count of at least 4."""
    if value is not None and (value < 4 or value % 2):
        raise ValueError("must be an even number >= 4")


@dataclasses.dataclass
class ModelConfig:
    """Architecture preset, sizes, regularisation and adaptor settings; a None size comes from the arch.
    Embeddings are always shared by encoder, decoder and output projection (no switch)."""

    arch: str = option("tiny", "size preset: micro, tiny, medium, base, large, huge, OFA's ofa_tiny .. ofa_huge "
                               "(plugins add more)", short="-a")
    embed_dim: Optional[int] = option(None, "model width (default: from the arch)", check=at_least(1))
    ffn_embed_dim: Optional[int] = option(None, "feed-forward width (default: from the arch)", check=at_least(1))
    attention_heads: Optional[int] = option(None, "attention heads (default: from the arch)", check=at_least(1))
    encoder_layers: Optional[int] = option(None, "encoder layers (default: from the arch)", check=at_least(1))
    decoder_layers: Optional[int] = option(None, "decoder layers (default: from the arch)", check=at_least(1))
    dropout: float = option(0.1, "dropout probability", check=fraction)
    attention_dropout: float = option(0.0, "dropout on attention weights", check=fraction)
    activation_dropout: float = option(0.0, "dropout after the feed-forward activation", check=fraction)
    drop_path_rate: float = option(0.0, "stochastic depth rate", check=fraction)
    max_source_positions: int = option(1024, "encoder positions per sample (longer groups fail or are truncated "
                                             "with truncate_long)", check=at_least(1))
    max_target_positions: int = option(1024, "decoder positions per sample", check=at_least(1))
    image_adaptor: Optional[str] = option(None, "image adaptor of image pieces that name none (default: from the "
                                                "arch)")
    image_size: Optional[int] = option(None, "image side in pixels the image adaptor expects (default: from the "
                                             "arch)", check=at_least(1))
    patch_size: Optional[int] = option(None, "image_patch: pixels per patch side (default: from the arch)",
                                       check=at_least(1))
    patch_stem: str = option("conv", "image_patch: how a patch becomes a vector: linear (one strided conv, ViT's "
                                       "patchify) or conv (3x3 stride-2 convolutions with BatchNorm statistics per "
                                       "task, as many as halve the image to the patch grid; needs a power-of-two "
                                       "patch_size; docs/model.md)",
                             check=one_of(*PATCH_STEMS))
    resnet_depth: Optional[int] = option(None, "image_resnet depth: 50, 101 or 152 (default: from the arch)",
                                         check=one_of(*RESNET_STAGE_BLOCKS))
    image_backbone_weights: Optional[str] = option(
        None, "torchvision ResNet state_dict (.pth) to initialise image_resnet from; nothing is downloaded")
    audio_feature_dim: int = option(80, "audio_fbank: features per input step (80 fbank bins x n_frames_per_step)",
                                    check=at_least(1))
    audio_max_positions: int = option(750, "audio_fbank: positions after 4x subsampling (750 = 30 s)",
                                      check=at_least(1))
    mel_bins: int = option(80, "audio_mel: mel bins per output frame (log-mel magnitudes)", check=at_least(1))
    mel_frames_per_step: int = option(1, "audio_mel: mel frames the decoder predicts per step (the slot's "
                                         "n_frames_per_step, when given, must equal it)", check=at_least(1))
    mel_hop_length: int = option(160, "audio_mel: samples between mel frames (160 = 10 ms at 16 kHz)",
                                 check=at_least(1))
    mel_win_length: int = option(400, "audio_mel: FFT window of a mel frame in samples", check=at_least(2))
    mel_prenet_dropout: float = option(
        0.5, "audio_mel: dropout after each prenet layer, in training and in decoding (Tacotron 2): the decoder "
             "cannot lean on the previous frame and must read the text (docs/multitask.md)", check=fraction)
    video_max_frames: int = option(32, "video_frames: most frames a video piece may have", check=at_least(1))
    motion_feature_dim: int = option(512, "motion_6d: features per frame the adaptor takes (6 + 6 x joints; smaller "
                                          "skeletons are zero-padded)", check=at_least(1))
    motion_max_frames: int = option(512, "motion_6d: most frames a motion piece may have", check=at_least(1))
    ctc_head: Optional[bool] = option(None, "CTC phone head on the encoder (None: when a task's criterion uses one)")
    ctc_phone_start: Optional[int] = option(None, "CTC head: first phone id (set when the model is built)",
                                            check=at_least(0))
    ctc_num_phones: Optional[int] = option(None, "CTC head: number of phones (set when the model is built)",
                                           check=at_least(1))
    image_tokenizer: Optional[str] = option(
        None, "image tokenizer file of IMAGE outputs (ofasys-train-image-tokenizer); checkpoints record its content, "
              "not the path")
    image_code_grid: Optional[tuple[int, int]] = option(
        None, "image_code: rows, cols of the code grid (set from the image tokenizer when the model is built)")
    image_code_range: Optional[tuple[int, int]] = option(
        None, "image_code: first and end (exclusive) code id (set from the vocabulary when the model is built)")
    text_rel_buckets: Optional[int] = option(
        None, "1-D relative position buckets (text, audio, video frames, decoder); with text_positions=ofa OFA's "
              "token_bucket_size (2 x N - 1 table rows) (default: from the arch; 32, ofa_*: 256)", check=even_buckets)
    text_rel_max_distance: Optional[int] = option(
        None, "1-D relative distance of the last bucket (default: from the arch; 128, ofa_*: 1023)", check=at_least(1))
    image_rel_buckets: Optional[int] = option(
        None, "relative position buckets per image axis; with image_positions=ofa OFA's image_bucket_size: the "
              "largest feature grid side (default: from the arch; 16, ofa_*: 42)", check=even_buckets)
    image_rel_max_distance: Optional[int] = option(
        None, "relative distance of the last bucket per image axis (image_positions=ofasys_fs; default: 32)",
        check=at_least(1))
    text_positions: Optional[str] = option(
        None, "1-D position tables: ofasys_fs (T5-style buckets) or ofa (OFA's buckets, per-layer tables, two extra "
              "position rows) (default: from the arch)", check=one_of(*POSITION_STYLES))
    image_positions: Optional[str] = option(
        None, "image position tables: ofasys_fs (row + column vectors, bucketed offsets) or ofa (one vector per grid "
              "cell, exact 2-D offsets) (default: from the arch)", check=one_of(*POSITION_STYLES))
    scale_embedding: Optional[bool] = option(None, "multiply token embeddings by sqrt(embed_dim) (default: from the "
                                                   "arch; ofa_*: no, OFA's no_scale_embedding)")
    type_embedding: Optional[bool] = option(None, "text and image pieces add a learned type vector before their "
                                                  "layer norm (OFA's type_embedding; default: from the arch)")
    attn_scale_factor: Optional[float] = option(None, "attention logits scaled by 1/sqrt(factor x head_dim) "
                                                      "(default: from the arch; 1, ofa_*: 2)", check=positive)
    scale_heads: Optional[bool] = option(None, "a learned gain per attention head (OFA's --scale-heads, NormFormer; "
                                               "default: from the arch)")
    scale_attn: Optional[bool] = option(None, "layer norm on every attention output (OFA's --scale-attn: attn_ln, "
                                              "self_attn_ln, cross_attn_ln; default: from the arch)")
    scale_fc: Optional[bool] = option(None, "layer norm inside the feed-forward block after the activation (OFA's "
                                            "--scale-fc; default: from the arch)")
    image_first: Optional[bool] = option(None, "encoder: image pieces first, then the others in instruction order "
                                               "(OFA's order; default: from the arch)")
    image_resize: Optional[str] = option(None, "how images are resized to image_size: torch (antialiased bicubic) or "
                                               "pil (PIL's bicubic, OFA's) (default: from the arch)",
                                         check=one_of(*IMAGE_RESIZE_FILTERS))
    resnet_drop_path_rate: float = option(0.0, "image_resnet: stochastic depth of the bottleneck blocks (OFA's "
                                               "--resnet-drop-path-rate)", check=fraction)
    checkpoint_activations: bool = option(False, "recompute activations in the backward pass to save memory")
    entangle_position_embedding: bool = option(
        False, "add the position vectors to the token/patch embeddings too, not only to the attention biases (OFA)")
    memory_positions: Optional[bool] = option(
        None, "add the encoder's position vectors, scaled per dimension by a learnt vector that starts at 0, to its "
              "output, so that the decoder can read where a source token is, not only what it is (a box's "
              "coordinates; docs/model.md) (default: from the arch: on for ofasys_fs's archs, off for OFA's)")
    continuous_decoder_layers: bool = option(
        True, "continuous outputs (speech frames, motion) run decoder layers of their own and the token outputs the "
              "shared ones; built only in a model with such an output (docs/multitask.md: shared layers cost speech "
              "most of its quality among ten token tasks)")
    continuous_cross_positions: bool = option(
        True, "continuous outputs with decoder layers of their own also project the cross-attention position bias "
              "with projections of their own (built only with continuous_decoder_layers): speech learns its "
              "alignment there, not in the bias every token output reads (docs/multitask.md, session 16); decoding "
              "gives source positions past the longest trained one that one's key (session 18)")
    entangle_decoder_positions: bool = option(
        False, "decoder: add the raw position table rows to the token embeddings before their layer norm (OFA "
               "trained without --disable-entangle; its released checkpoints were trained with it)")

    def __post_init__(self) -> None:
        check_fields(self, "model config")
