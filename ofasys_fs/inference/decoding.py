"""Decoding options of one decoder: per-kind defaults < the task's decoding defaults < the caller's options,
then the constraints the decoder's shape implies (BOX bins, closed-set trie, repetition grammar).

See docs/inference.md, "Options and defaults".
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from ..generators.config import OPTION_ALIASES, GenerationConfig
from ..generators.constraints import RepetitionGrammar
from ..generators.sequence import OBJECT_OPTIONS, SequenceGenerator
from ..registry import GENERATOR_REGISTRY, build_generator
from .layout import BOX, BOX_TOKENS, CLOSED_SET, CODES, FEATURES, MIXED, REPETITION, TEXT, DecoderLayout

GENERATOR_KEY = "generator"  # in a task's `generation` dict: the registered generator to use

# OFA-style defaults per decoder kind, over GenerationConfig's fallbacks, used where neither the task nor the
# caller sets the option
KIND_DEFAULTS = {
    TEXT: GenerationConfig(max_len_b=64, no_repeat_ngram_size=3),
    BOX: GenerationConfig(),
    CLOSED_SET: GenerationConfig(lenpen=0.0),  # rank answers by their log-probability
    REPETITION: GenerationConfig(),
    MIXED: GenerationConfig(max_len_b=64),
    FEATURES: GenerationConfig(),
    CODES: GenerationConfig(do_sample=True, beam=8),  # 8 sampled candidates, the most likely one returned
}


def accepted_options(generator: Any) -> set[str]:
    """Option names a generator takes per call: its config fields (plus the sequence generator's objects)."""
    config_class = getattr(type(generator), "config_class", None)
    names = {field.name for field in dataclasses.fields(config_class)} if config_class else set()
    if isinstance(generator, SequenceGenerator):
        names |= set(OBJECT_OPTIONS) | set(OPTION_ALIASES)
    return names


def generator_name(encoder: Any, generation: Optional[dict] = None) -> str:
    """The registered generator of a task's output: its `generation` names one, else the output's preprocessor
    does (code_sampling for IMAGE, ddim for MOTION, ...), else the sequence generator."""
    output = encoder.output_preprocessor(encoder.templates[0])
    return ((generation or {}).get(GENERATOR_KEY) or getattr(output, "generator", None)
            or GENERATOR_REGISTRY.default)


def generated_with_guidance(encoder: Any, generation: Optional[dict] = None) -> bool:
    """Whether the task's output is decoded by a generator that takes classifier-free guidance; training then
    drops the prompt of a condition_dropout share of its rows (guidance.py)."""
    return GENERATOR_REGISTRY.get(generator_name(encoder, generation)).cls.guidance


class DecodingPlan:
    """The generator of one decoder and the options of each `generate` call.

    Our defaults and the shape constraints go only to generators that accept them; options from the
    task and the caller always go through, so a misspelt one is the generator's error. A continuous output
    is decoded by its preprocessor's generator, and the options it names (`output_options`, e.g. the vocoder)
    go to its `decode_features` instead (`output_options()`).
    """

    def __init__(self, layout: DecoderLayout, encoder: Any, generation: Optional[dict] = None):
        task_options = dict(generation or {})
        output = encoder.output_preprocessor(encoder.templates[0])
        self.output_option_names = set(output.output_options) if output is not None else set()
        self.generator_name = generator_name(encoder, task_options)
        task_options.pop(GENERATOR_KEY, None)
        self.generator = build_generator(self.generator_name)
        self.accepted = accepted_options(self.generator)
        self.layout, self.encoder, self.task_options = layout, encoder, task_options
        self.grammar = repetition_grammar(layout, encoder.vocab)

    def options(self, given: Optional[dict] = None) -> dict:
        """The keyword options of `generator.generate` for the caller's `given` options."""
        merged = {**self.accepted_only(self.defaults()), **self.task_options, **(given or {})}
        merged.update(self.accepted_only(self.shape_options(merged)))
        return {name: value for name, value in merged.items() if name not in self.output_option_names}

    def output_options(self, given: Optional[dict] = None) -> dict:
        """The options of a continuous output's `decode_features` (defaults < task < caller)."""
        merged = {**self.defaults(), **self.task_options, **(given or {})}
        return {name: value for name, value in merged.items() if name in self.output_option_names}

    def defaults(self) -> dict:
        return {**GenerationConfig().resolved().given(), **KIND_DEFAULTS[self.layout.kind].given()}

    def accepted_only(self, options: dict) -> dict:
        return {name: value for name, value in options.items() if name in self.accepted}

    def shape_options(self, merged: dict) -> dict:
        """What the decoder's shape fixes: exactly 4 bins per box, a closed set's answers, the repetition grammar,
        what a media output's preprocessor says (an image: exactly rows x cols code ids)."""
        layout, vocab = self.layout, self.encoder.vocab
        if layout.kind == CODES:
            return self.encoder.preprocessors[layout.free[0]].decoding_options(len(vocab))
        if layout.kind == BOX:
            length = BOX_TOKENS * layout.box_count
            allowed = torch.zeros(len(vocab), dtype=torch.bool)
            allowed[vocab.range("bin").start:vocab.range("bin").stop] = True
            return {"allowed_tokens": allowed, "min_len": length, "max_len_a": 0.0, "max_len_b": length}
        if layout.kind == CLOSED_SET:
            slot = layout.free[0]
            if merged.get("exhaustive"):
                tokenize = self.encoder.preprocessors[slot].tokenize
                return {"candidates": [tokenize(answer) for answer in self.encoder.answers]}
            return {"constraint_trie": self.encoder.tries[slot]}
        if self.grammar is not None:
            return {"constraints": [*(merged.get("constraints") or ()), self.grammar]}
        return {}


def repetition_grammar(layout: DecoderLayout, vocab: Any) -> Optional[RepetitionGrammar]:
    """The `( ... )*` group as a RepetitionGrammar (BOX: 4 bins; PHONE: phones; other text-like: text ids), or
    a mixed decoder such as `[BOX:region] [TEXT:label]` as one such group; None for other decoders and for
    pieces the grammar cannot express (literal text, adjacent text slots)."""
    if layout.kind == REPETITION:
        max_repeat = layout.repeat.max_repeat
    elif layout.kind == MIXED and layout.repeat is None:
        max_repeat = 1
    else:
        return None
    segments = []
    for slot in layout.free:
        if slot.modality == "PLAIN":
            return None
        if slot.modality == "BOX":
            segments.append((vocab.range("bin"), BOX_TOKENS))
        else:
            segments.append((vocab.range("phone" if slot.modality == "PHONE" else "text"), None))
    try:
        return RepetitionGrammar(segments, len(vocab), max_repeat)
    except ValueError:
        return None
