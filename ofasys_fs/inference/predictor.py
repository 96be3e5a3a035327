"""Predictor: the one inference path shared by OFASys.inference, ofasys-generate, ofasys-validate,
ofasys-interactive and validation during training.

Rows are encoded without their targets (references stay in the row for metrics), collated in batches in
row order, decoded by the task's generator with the options of `DecodingPlan`, and read back into Outputs.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from ..contracts import SampleContext
from ..data.dataset import TaskDataset
from ..data.encode import EncodeError, Example, RowEncoder
from ..data.loader import make_loader
from ..data.rows import RowSource, as_row_source
from ..devices import move_to
from ..errors import ConfigError
from ..generators.sequence import eval_mode
from .decoding import DecodingPlan
from .layout import DecoderLayout, TokenReader, has_loss
from .outputs import Output, OutputBuilder

DEFAULT_BATCH_SIZE = 16
TARGET_FREE_SPLITS = {"train": "test", "valid": "test"}  # how rows of these splits are bound without targets


class TargetFreeEncoder:
    """A RowEncoder that leaves the rows' targets out: generation needs only the encoder side and the prompt,
    and a target the task could not encode (e.g. an answer outside the closed set) must not stop it. An output
    given in part at inference (motion in-betweening's known frames) is kept and must be there."""

    def __init__(self, encoder: RowEncoder):
        self.encoder, self.vocab, self.preprocessors = encoder, encoder.vocab, encoder.preprocessors
        self.given = [given_output(encoder, template) for template in encoder.templates]
        self.target_columns = target_only_columns(encoder.templates) - {slot.name for slot in self.given if slot}

    def encode(self, row: dict, ctx: SampleContext) -> Example:
        ctx = dataclasses.replace(ctx, split=TARGET_FREE_SPLITS.get(ctx.split, ctx.split))
        inputs = {key: value for key, value in row.items() if key not in self.target_columns}
        example = self.encoder.encode(inputs, ctx)
        given = self.given[example.template]
        if given is not None and example.decoder_features is None:
            raise EncodeError(f"the output {given} has known frames (in-betweening), taken from this column's "
                              f"motion; the row has none", ctx.task or self.encoder.task_name, ctx.row_index,
                              given.name)
        return dataclasses.replace(example, row=dict(row), decoder_tokens=None, target_length=0, loss_mask=None,
                                   constraints=[], phone_targets=None,
                                   decoder_features=example.decoder_features if given is not None else None)


def given_output(encoder: RowEncoder, template: Any) -> Optional[Any]:
    """The template's output slot when its preprocessor is given in part at inference, else None."""
    output = encoder.continuous_output(template)
    return template.decoder[0] if output is not None and output.given_at_inference else None


def target_only_columns(templates: Iterable) -> set:
    """Row keys read only by loss-bearing decoder slots (the targets), never by an input or a prompt."""
    targets, inputs = set(), set()
    for template in templates:
        for slot in (*template.encoder, *template.decoder):
            if slot.name is None:
                continue
            column = template.repeat.list_name if slot.in_repeat else slot.name
            (targets if slot.side == "decoder" and has_loss(slot) else inputs).add(column)
    return targets - inputs


class Predictor:
    """Decodes rows of one task or instruction: `predict(rows) -> [Output]` in row order.

    `encoder` is the RowEncoder of the task (or of the one instruction), `generation` the task's decoding
    defaults (with an optional "generator" name); `seed` draws the template of multi-template tasks;
    `prepare(source, split) -> RowSource` reads raw rows as the task does (`Task.prepared_rows`).
    """

    def __init__(self, model: torch.nn.Module, encoder: RowEncoder, generation: Optional[dict] = None,
                 seed: int = 1, prepare: Optional[Callable[[Any, str], RowSource]] = None):
        self.model, self.encoder, self.seed, self.prepare = model, encoder, seed, prepare
        self.layout = DecoderLayout.of(encoder.templates[0], encoder.output_preprocessor(encoder.templates[0]))
        self.plan = DecodingPlan(self.layout, encoder, generation)
        literal = lambda slot: encoder.vocab.encode_piece(slot.text)  # noqa: E731
        self.builder = OutputBuilder(TokenReader(self.layout, encoder.vocab, literal), encoder.preprocessors,
                                     encoder.continuous_output(encoder.templates[0]))

    @property
    def task_name(self) -> str:
        return self.encoder.task_name

    def rows(self, source: Any, split: str = "inference") -> RowSource:
        """Rows to decode: a RowSource as it is (a task's datasets are prepared already); anything else (a list
        of dicts, a file, a folder holding <split>.jsonl) through the task's row preparation."""
        if isinstance(source, RowSource):
            return source
        return self.prepare(source, split) if self.prepare is not None else as_row_source(source, split)

    def predict(self, rows: Any, indices: Optional[Sequence[int]] = None, *, options: Optional[dict] = None,
                batch_size: Optional[int] = None, split: str = "inference", num_workers: int = 0,
                progress: bool = False) -> list[Output]:
        """Outputs of `rows` (a list of dicts or any row source), or of the rows at `indices`, in that order."""
        return [output for _, output in self.predict_indexed(rows, indices, options=options, batch_size=batch_size,
                                                            split=split, num_workers=num_workers, progress=progress)]

    def predict_indexed(self, rows: Any, indices: Optional[Sequence[int]] = None, *, options: Optional[dict] = None,
                        batch_size: Optional[int] = None, split: str = "inference", num_workers: int = 0,
                        progress: bool = False) -> list[tuple[int, Output]]:
        """(row index, Output) pairs in the order of `indices` (default: every row)."""
        source = self.rows(rows, split)
        indices = list(range(len(source)) if indices is None else indices)
        size = batch_size or DEFAULT_BATCH_SIZE
        if size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {size}")
        holder = types.SimpleNamespace(name=self.task_name, datasets={split: source})
        dataset = TaskDataset(holder, split, TargetFreeEncoder(self.encoder), self.seed)
        batches = [indices[start:start + size] for start in range(0, len(indices), size)]
        loader = make_loader(dataset, batches, list, num_workers, self.seed)
        generate_options = self.plan.options(options)
        self.builder.output_options = self.plan.output_options(options)
        results = []
        with eval_mode(self.model):  # also for plugin generators that do not switch it themselves
            for examples in progress_bar(loader, len(batches), progress, self.task_name):
                sample = self.encoder.collate(examples)
                decoded = dict(zip(sample["id"].tolist(), self.decode(sample, generate_options)))
                results.extend((example.index, decoded[example.index]) for example in examples)
        return results

    def decode(self, sample: dict, options: dict) -> list[Output]:
        """Generate for one collated batch and build its Outputs."""
        device = next(self.model.parameters()).device
        hypotheses = self.plan.generator.generate(self.model, move_to(sample, device), **options)
        prefixes = [[t for t in row if t != self.encoder.vocab.pad] for row in sample["prefix_tokens"].tolist()]
        return [self.builder.build(hyps, prefix, row, sizes) for hyps, prefix, row, sizes
                in zip(hypotheses, prefixes, sample["rows"], sample["image_sizes"])]


def progress_bar(batches: Iterable, total: int, enabled: bool, what: str) -> Iterable:
    """tqdm over the batches when asked (CLIs turn it on when stderr is a terminal)."""
    if not enabled:
        return batches
    from tqdm import tqdm

    return tqdm(batches, total=total, desc=what, unit="batch", leave=False)
