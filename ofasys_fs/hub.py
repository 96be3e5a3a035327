"""OFASys: a trained checkpoint ready for inference through instructions alone (docs/inference.md).

    m = OFASys.from_pretrained("ckpt/checkpoint_best.pt")
    out = m.inference("[IMAGE:img] what does the image describe? -> [TEXT:cap]", data={"img": "cat.jpg"})

Everything is rebuilt from the checkpoint file: plugins (recorded --user-dir folders), vocabulary, model,
preprocessing settings and the trained tasks (instructions, closed answer sets, decoding defaults).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any, Optional, Sequence, Union

import torch

from .checkpoint import inference_weights, load_checkpoint
from .data.encode import RowEncoder
from .devices import resolve_device
from .errors import CheckpointError, ConfigError
from .image_tokenizers.files import remember_payload
from .inference.outputs import Output
from .inference.predictor import Predictor
from .instruction import Instruction
from .models.config import ModelConfig
from .models.generalist import GeneralistModel
from .models.quantize import quantize_linear_layers
from .preprocess.config import DataConfig
from .registry import TASK_REGISTRY, import_user_dir
from .schemas import training_attrs
from .tasks.base import Task
from .vocab import Vocabulary

__all__ = ["OFASys", "Output"]

INFERENCE_TASK = "inference"  # name of the ad-hoc task of an instruction that matches no trained task


class OFASys:
    """A model with its vocabulary, preprocessing settings and trained tasks; `inference` decodes rows."""

    def __init__(self, model: GeneralistModel, vocab: Vocabulary, tasks: Sequence[Task],
                 data_cfg: Optional[DataConfig] = None,
                 train_config: Optional[dict] = None, path: Optional[str] = None):
        self.model, self.vocab, self.tasks = model, vocab, list(tasks)
        model.eval()  # not used as a value: after fairseq's prepare_for_inference_, eval() returns None
        self.data_cfg, self.train_config, self.path = data_cfg, train_config or {}, path
        self.predictors: dict[str, Predictor] = {}

    @classmethod
    def from_pretrained(cls, path: str, user_dir: Union[str, Sequence[str], None] = None,
                        device: Union[str, torch.device, None] = None, use_ema: Optional[bool] = None,
                        quantize: Optional[str] = None) -> "OFASys":
        """Load a checkpoint written by the Trainer (weights_only). `user_dir`: plugin folder(s) to import
        (the checkpoint's recorded ones are only named in a warning, never imported); `device`: default cuda when
        available (cpu with `quantize`); `use_ema`: None = the weights the run validated with, True/False = EMA /
        raw weights; `quantize="int8"`: decode with int8 linear layers on CPU (models/quantize.py)."""
        target = resolve_device(device if device is not None else "cpu" if quantize else "auto")
        state = load_checkpoint(str(path), for_inference=True)
        import_plugins(state.get("user_dirs") or [], [user_dir] if isinstance(user_dir, str) else list(user_dir or []))
        description = state.get("config") or {}
        missing = [key for key in ("model", "vocab_size", "adaptor_names", "data") if key not in description]
        if missing:
            raise CheckpointError(f"{path} lacks the model description {missing} in its config; it was not written "
                                  f"by the ofasys_fs Trainer")
        model = rebuild_model(description, select_weights(state, use_ema, path), path)  # names missing plugins
        for reference, payload in (state.get("image_tokenizers") or {}).items():
            remember_payload(payload, reference, f"{path}, image tokenizer {reference[:20]}...")
        try:
            vocab = Vocabulary.from_dict(state["vocab"])
            tasks = [rebuild_task(stored) for stored in state["tasks"]]
            data_cfg = DataConfig.from_dict(description["data"])
        except (ValueError, KeyError, TypeError) as err:  # a vocabulary, task or data entry edited by hand
            raise CheckpointError(f"{path}: its stored vocabulary, tasks or data config cannot be rebuilt: "
                                  f"{err}") from err
        model.to(target)
        if quantize is not None:
            quantize_linear_layers(model, quantize)
        return cls(model, vocab, tasks, data_cfg, description.get("train"), str(path))

    # ---- tasks and predictors ----------------------------------------------------------------

    def task(self, name: str) -> Task:
        """A trained task by name."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise ConfigError(f"no task {name!r} in {self.path or 'this model'}; trained tasks: "
                       f"{[task.name for task in self.tasks]}")

    def matching_task(self, template: Instruction) -> Optional[Task]:
        """The trained task one of whose templates is this instruction (markers and spacing aside; a nameless
        output slot, as in the seed's `-> [IMAGE,preprocess=image_vqgan]`, matches that slot with a name)."""
        for task in self.tasks:
            if any(t.encoder == template.encoder and same_decoder(t.decoder, template.decoder) for t in task.templates):
                return task
        return None

    def predictor(self, instruction: str) -> Predictor:
        """The Predictor of one instruction: a trained task's decoding defaults and answers when it matches
        one of its templates, else the defaults of its output kind (docs/inference.md)."""
        if instruction not in self.predictors:
            template = Instruction.parse(instruction)
            self.check_adaptors([template])
            task = self.matching_task(template)
            if task is None and self.tasks:
                warnings.warn(self.unmatched(template), stacklevel=3)
            answers = task.answers if task is not None else self.closed_set_answers(template)
            encoder = RowEncoder(task.name if task else INFERENCE_TASK, [template], self.vocab, self.data_cfg, answers)
            self.check_code_grid(encoder)
            self.predictors[instruction] = Predictor(self.model, encoder, task.generation if task else None,
                                                     self.seed, task.prepared_rows if task else None)
        return self.predictors[instruction]

    def unmatched(self, template: Instruction) -> str:
        """The warning for an instruction that is no trained task's template, naming the nearest one."""
        trained = {t.text: task.name for task in self.tasks for t in task.templates}
        nearest = difflib.get_close_matches(template.text, trained, n=1, cutoff=0.0)[0]
        return (f"the instruction {template.text!r} matches no task {self.path or 'this model'} was trained on, so it "
                f"decodes with its output kind's defaults, without a task's decoding settings or closed answer set; "
                f"the nearest trained instruction is {nearest!r} (task {trained[nearest]!r})")

    def task_predictor(self, task: Task) -> Predictor:
        """The Predictor of a task with all its templates (drawn per row as in validation)."""
        self.check_adaptors(task.templates)
        encoder = RowEncoder.for_task(task, self.vocab, self.data_cfg)
        self.check_code_grid(encoder)
        return Predictor(self.model, encoder, task.generation, self.seed, task.prepared_rows)

    @property
    def seed(self) -> int:
        return int((self.train_config.get("common") or {}).get("seed", 1))

    def closed_set_answers(self, template: Instruction) -> Optional[list]:
        """Answers for the closed_set slots of an untrained instruction: from the trained task whose closed_set
        slot reads the same target column."""
        columns = {slot.name for slot in template.decoder if slot.attrs.get("closed_set")}
        if not columns:
            return None
        for task in self.tasks:
            trained = {slot.name for t in task.templates for slot in t.decoder if slot.attrs.get("closed_set")}
            if task.answers and columns & trained:
                return task.answers
        raise ConfigError(f"the instruction {template.text!r} has a closed_set output {sorted(columns)}, but no task of "
                         f"{self.path or 'this model'} was trained with a closed set on that column; trained tasks: "
                         f"{[task.name for task in self.tasks]}")

    def check_adaptors(self, templates: Sequence[Instruction]) -> None:
        unknown = sorted(self.model.adaptors_for(templates) - set(self.model.adaptor_names))
        if unknown:
            raise ConfigError(f"{templates[0].text!r} needs the adaptors {unknown}, which this model was not "
                             f"trained with (it has {sorted(self.model.adaptor_names)})")

    def check_code_grid(self, encoder: RowEncoder) -> None:
        """An image_code slot's tokenizer must make the code grid the model learnt."""
        trained_grid = self.model.cfg.image_code_grid
        for slot, preprocessor in encoder.preprocessors.items():
            grid = getattr(getattr(preprocessor, "tokenizer", None), "grid", None)
            if grid is not None and trained_grid is not None and tuple(grid) != tuple(trained_grid):
                raise ConfigError(f"the slot {slot}: its image tokenizer makes a {grid[0]}x{grid[1]} code grid, but "
                                  f"this model learnt {trained_grid[0]}x{trained_grid[1]} grids")

    # ---- inference ---------------------------------------------------------------------------

    def inference(self, instruction: str, data: Any, beam_size: Optional[int] = None,
                  **gen_options: Any) -> Union[Output, list[Output]]:
        """Decode `data` with `instruction`: a dict gives one Output, a list (or any row source) a list.

        Options: `beam_size`, every option of the generator (docs/generation.md; falsy values are honoured),
        and `batch_size` (rows per batch, default 16). Unset options come from the trained task or the
        output kind's defaults.
        """
        batch_size = gen_options.pop("batch_size", None)
        if beam_size is not None:
            if "beam" in gen_options:
                raise TypeError("inference: give beam_size or beam, not both")
            gen_options["beam"] = beam_size
        predictor = self.predictor(instruction)
        single = isinstance(data, Mapping)
        outputs = predictor.predict([data] if single else data, options=gen_options, batch_size=batch_size)
        return outputs[0] if single else outputs

    __call__ = inference


def same_decoder(trained: Sequence, asked: Sequence) -> bool:
    """The decoders are equal, or `asked` is one nameless output slot and `trained` that slot with a column;
    attributes that change only decoding (a motion output's known frames) aside."""
    trained, asked = ([dataclasses.replace(slot, attrs=training_attrs(slot.attrs)) for slot in decoder]
                      for decoder in (trained, asked))
    if tuple(trained) == tuple(asked):
        return True
    return (len(trained) == len(asked) == 1 and asked[0].name is None and trained[0].name is not None
            and dataclasses.replace(trained[0], name=None) == asked[0])


def import_plugins(recorded: Sequence[str], given: Sequence[str]) -> None:
    """Import the plugin folders the caller gave. The checkpoint's recorded folders are never imported on its
    say-so (a checkpoint may come from anyone, and importing runs code): a missing one is a warning that says
    how to load it."""
    for path in given:
        import_user_dir(path)
    for path in recorded:
        if os.path.basename(os.path.normpath(path)) not in sys.modules:
            warnings.warn(f"the checkpoint was trained with --user-dir {path}, which is not loaded; if its tasks use "
                          f"the plugin, pass user_dir=... (--user-dir) with that folder", stacklevel=3)


def select_weights(state: dict, use_ema: Optional[bool], path: str) -> dict:
    if use_ema is None:
        return inference_weights(state)
    if not use_ema:
        return state["model"]
    if not state.get("ema"):
        raise CheckpointError(f"use_ema=True, but {path} has no EMA weights (train with ema_decay to keep them)")
    return state["ema"]["shadow"]


def described_model(description: dict, path: str, model_class: type = GeneralistModel) -> GeneralistModel:
    """The trained architecture from its stored config (a `model_class`, GeneralistModel or a subclass), before its
    weights are loaded."""
    stored = {**description["model"], "image_backbone_weights": None}  # the trained weights replace those
    try:
        return model_class(ModelConfig(**stored), description["vocab_size"], description["adaptor_names"])
    except (TypeError, ConfigError) as err:
        raise CheckpointError(f"{path}: its model config does not fit this ofasys_fs version: {err}") from err


def rebuild_model(description: dict, weights: dict, path: str) -> GeneralistModel:
    """The trained architecture from its stored config, with the weights loaded strictly."""
    model = described_model(description, path)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the stored weights do not fit the stored model description: {err}") from err
    return model


def rebuild_task(stored: dict) -> Task:
    """A trained task from its checkpoint entry, as its registered class when that is importable."""
    name = stored.get("class")
    task_class = TASK_REGISTRY.get(name).cls if name and name in TASK_REGISTRY else Task
    return task_class.from_dict(stored)
