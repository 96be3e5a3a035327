"""A GeneralistModel and a transformers BART of identical dimensions, and one synthetic token batch both read;
the same BART converted for CTranslate2.

Identical: d_model, FFN width, heads, encoder/decoder layers, vocabulary (ofasys_fs's default, 17,470
ids), 1024 positions, GELU, dropout 0.1 (attention/activation dropout 0), shared embeddings. BART runs
with attn_implementation="sdpa". Our model keeps its default configuration (biases, position machinery).
"""
from __future__ import annotations

import dataclasses
import os

import torch

from ofasys_fs.models.archs import resolve_config
from ofasys_fs.models.config import ModelConfig
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.vocab import Vocabulary

BOS, PAD, EOS = 0, 1, 2
FIRST_TEXT_ID = 4  # after <s> <pad> </s> <unk>


def vocab_size() -> int:
    """The default vocabulary's size: what a user's model gets."""
    return len(Vocabulary.default())


def arch_config(arch: str) -> ModelConfig:
    """The resolved config of one of our arch presets."""
    return resolve_config(ModelConfig(arch=arch))


def build_ours(arch: str, vocab: int, seed: int = 0) -> GeneralistModel:
    """Our model at `arch`, default configuration, text adaptor only."""
    torch.manual_seed(seed)
    return GeneralistModel(arch=arch).build(vocab, ("text",))


def build_bart(arch: str, vocab: int, seed: int = 0):
    """transformers' BartForConditionalGeneration with our arch's dimensions and SDPA attention."""
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = arch_config(arch)
    bart_cfg = BartConfig(
        vocab_size=vocab, d_model=cfg.embed_dim, encoder_ffn_dim=cfg.ffn_embed_dim,
        decoder_ffn_dim=cfg.ffn_embed_dim, encoder_attention_heads=cfg.attention_heads,
        decoder_attention_heads=cfg.attention_heads, encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers, max_position_embeddings=cfg.max_target_positions,
        activation_function="gelu", dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
        decoder_start_token_id=BOS, forced_bos_token_id=None, forced_eos_token_id=EOS,
    )
    torch.manual_seed(seed)
    return BartForConditionalGeneration._from_config(bart_cfg, attn_implementation="sdpa")


def ctranslate2_token(token_id: int) -> str:
    """The name of a token id in the converted model's vocabulary (ids need no text: the batch is random ids)."""
    return f"<{token_id}>"


def token_id(name: str) -> int:
    """The id of a converted model's token name (inverse of ctranslate2_token)."""
    return int(name[1:-1])


class IdVocabulary:
    """What CTranslate2's BART converter reads from a tokenizer, for a vocabulary of bare ids (no files)."""

    bos_token, eos_token, unk_token = (ctranslate2_token(i) for i in (BOS, EOS, 3))

    def __init__(self, size: int):
        self.size = size

    def get_vocab(self) -> dict[str, int]:
        return {ctranslate2_token(i): i for i in range(self.size)}

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return ctranslate2_token(token_id)


def convert_bart_to_ctranslate2(bart, folder: str) -> str:
    """`bart` converted offline by ctranslate2.converters.TransformersConverter into `folder`/ct2 (float32; the
    compute type is chosen when loading); returns that path. The converter reads a post-norm BART with a layer
    norm on the embeddings from normalize_before=False, normalize_embedding=True, which a fresh transformers 5
    BartConfig lacks, and takes the model and vocabulary from memory instead of a hub folder."""
    import transformers
    from ctranslate2.converters import TransformersConverter

    transformers.logging.set_verbosity_error()  # the converter's config keyword draws a deprecation notice
    bart.config.normalize_before, bart.config.normalize_embedding = False, True
    bart.config.save_pretrained(folder)  # the converter reads the config from the folder

    class InMemory(TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            return bart

        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return IdVocabulary(bart.config.vocab_size)

    return InMemory(folder).convert(os.path.join(folder, "ct2"), quantization="float32")


@dataclasses.dataclass
class TokenBatch:
    """Random text ids without padding: source [B, S], decoder input [B, T] (<s> first) and target [B, T]."""

    source: torch.Tensor
    prev_output_tokens: torch.Tensor
    target: torch.Tensor

    @classmethod
    def random(cls, batch: int, source_length: int, target_length: int, vocab: int, seed: int = 0) -> "TokenBatch":
        generator = torch.Generator().manual_seed(seed)
        source = torch.randint(FIRST_TEXT_ID, vocab, (batch, source_length), generator=generator)
        target = torch.randint(FIRST_TEXT_ID, vocab, (batch, target_length), generator=generator)
        target[:, -1] = EOS
        prev = torch.cat([torch.full((batch, 1), BOS), target[:, :-1]], dim=1)
        return cls(source, prev, target)

    def ours_sample(self) -> dict:
        """The collated sample format of ofasys_fs (docs/internals.md): one text piece."""
        piece = {"modality": "TEXT", "adaptor": "text", "tokens": self.source, "padding_mask": self.source.eq(PAD)}
        return {"net_input": {"encoder": [piece], "prev_output_tokens": self.prev_output_tokens},
                "target": self.target}

    def ctranslate2_source(self) -> list[list[str]]:
        """The source rows as CTranslate2's token lists."""
        return [[ctranslate2_token(i) for i in row] for row in self.source.tolist()]

    def bart_inputs(self) -> dict:
        """The same batch as BART's keyword arguments."""
        return {"input_ids": self.source, "attention_mask": self.source.ne(PAD).long(),
                "decoder_input_ids": self.prev_output_tokens,
                "decoder_attention_mask": self.prev_output_tokens.ne(PAD).long()}
