"""The fairseq task `ofasys`: ofasys_fs tasks (instructions, vocabulary, preprocessing) as one fairseq task.

    fairseq-train DATA --user-dir ofasys_fs/fairseq_plugin --task ofasys --arch micro --criterion ofasys_ce ...

DATA is a folder (fairseq reads its data argument as folders): one holding tasks.yaml, a config with a `tasks`
list and optionally `vocab` as ofasys-train reads them (paths relative to the folder), or the data folder of one
task (a shard folder, or one holding <split>.jsonl/...; --instruction, or the one its shard manifest records).
Checkpoints keep what ofasys_fs needs for inference in the task state (checkpoint_fairseq.py), so
OFASys.from_pretrained loads them.
"""

import dataclasses
import logging
import os
from contextlib import nullcontext
from typing import Any, Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.models import ARCH_MODEL_NAME_REGISTRY
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

from ofasys_fs.checkpoint_fairseq import TASK_STATE_KEY
from ofasys_fs.config import config_to_dict, load_config
from ofasys_fs.data.dataset import TaskDataset
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.data.shard_writing import TOKENIZER_FILE
from ofasys_fs.data.shards import is_shard_dir, read_manifest
from ofasys_fs.engine.config import TrainConfig
from ofasys_fs.engine.state import model_description
from ofasys_fs.errors import CheckpointError, ConfigError
from ofasys_fs.hub import OFASys, rebuild_task
from ofasys_fs.inference.predictor import Predictor
from ofasys_fs.models.task_batch_norm import rows_not_counted
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import imported_user_dirs
from ofasys_fs.tasks.base import Task
from ofasys_fs.tasks.config import TaskConfig, tasks_from_config
from ofasys_fs.vocab import VocabConfig, Vocabulary

from .criterion import CRITERION_NAME
from .dataset import TaskRowsDataset
from .dictionary import VocabularyDictionary
from .generator import TaskGenerator, generation_options
from .model import MODEL_NAME

logger = logging.getLogger(__name__)

TASK_NAME = "ofasys"
TASKS_YAML = "tasks.yaml"  # in a data folder: a config of several tasks
CARRIED_SECTIONS = ("tasks", "vocab")  # of a training YAML; fairseq's flags replace the others


@dataclasses.dataclass
class OfasysTaskConfig(FairseqDataclass):
    data: str = dataclasses.field(default="", metadata={
        "help": f"a folder holding {TASKS_YAML} (a `tasks` list and optionally `vocab`, as ofasys-train reads "
                f"them), or the data folder (shards or <split>.jsonl/...) of one task"})
    instruction: Optional[str] = dataclasses.field(default=None, metadata={
        "help": "instruction of a data folder (default: the one its shard manifest records)"})
    task_name: Optional[str] = dataclasses.field(default=None, metadata={
        "help": "name of a data folder's task (default: the folder's name)"})
    truncate_long: bool = dataclasses.field(default=False, metadata={
        "help": "truncate groups longer than the model's max positions instead of failing"})
    generation_args: str = dataclasses.field(default="{}", metadata={
        "help": 'ofasys_fs generation options without a fairseq flag, as JSON, e.g. \'{"exhaustive": true}\''})
    seed: int = II("common.seed")
    train_subset: str = II("dataset.train_subset")


def task_definitions(cfg: OfasysTaskConfig) -> tuple[VocabConfig, list[TaskConfig]]:
    """The vocabulary and the tasks the data folder describes: its tasks.yaml, else the folder as one task."""
    folder = cfg.data
    if not os.path.isdir(folder):
        raise ConfigError(f"--task ofasys: data {folder!r} is not a folder (a data or shard folder of one task, or a "
                          f"folder holding {TASKS_YAML})")
    if os.path.isfile(os.path.join(folder, TASKS_YAML)):
        return yaml_definitions(os.path.join(folder, TASKS_YAML))
    shards = is_shard_dir(folder)
    instruction = cfg.instruction or (read_manifest(folder).get("instruction") if shards else None)
    if instruction is None:
        raise ConfigError(f"--task ofasys: give --instruction for the rows of {folder} (it has no {TASKS_YAML}, and "
                          f"no shard manifest that records an instruction)")
    tokenizer = os.path.join(folder, TOKENIZER_FILE)
    vocab = VocabConfig(tokenizer=tokenizer) if shards and os.path.isfile(tokenizer) else VocabConfig()
    name = cfg.task_name or os.path.basename(os.path.normpath(folder))
    return vocab, [TaskConfig(name=name, instruction=instruction, data=folder)]


def yaml_definitions(path: str) -> tuple[VocabConfig, list[TaskConfig]]:
    """The `vocab` and `tasks` sections of a training YAML; paths in them are relative to its folder."""
    config = load_config(TrainConfig, path)
    defaults = config_to_dict(TrainConfig())
    ignored = sorted(name for name, value in config_to_dict(config).items()
                     if name not in CARRIED_SECTIONS and value != defaults[name])
    if ignored:
        logger.warning("%s: the sections %s do not apply under fairseq; its flags set them (docs/fairseq.md)",
                       path, ignored)
    folder = os.path.dirname(os.path.abspath(path))
    vocab = config.vocab
    if vocab.tokenizer is not None:
        vocab = dataclasses.replace(vocab, tokenizer=os.path.join(folder, vocab.tokenizer))
    return vocab, [within(folder, task) for task in config.tasks]


def within(folder: str, task: TaskConfig) -> TaskConfig:
    """The task with its data (and answers file) paths read relative to `folder` (absolute ones stay)."""
    def join(path: Any) -> Any:
        return os.path.join(folder, path) if isinstance(path, str) else path

    data = {split: join(path) for split, path in task.data.items()} if isinstance(task.data, dict) else join(task.data)
    return dataclasses.replace(task, data=data, train_data=join(task.train_data), valid_data=join(task.valid_data),
                               test_data=join(task.test_data), answers=join(task.answers))


@register_task(TASK_NAME, dataclass=OfasysTaskConfig)
class OfasysTask(FairseqTask):
    """ofasys_fs's tasks with their data, vocabulary and preprocessing; one batch holds one task."""

    def __init__(self, cfg: OfasysTaskConfig):
        super().__init__(cfg)
        vocab_cfg, definitions = task_definitions(cfg)
        self.vocab = Vocabulary.from_config(vocab_cfg)
        self.tasks: list[Task] = tasks_from_config(definitions)
        self.stored: Optional[dict] = None  # a checkpoint's task state, adopted before the model is built
        self.description: Optional[dict] = None  # the built model's (engine/state.py: model_description)
        self.data_cfg: Optional[DataConfig] = None
        self.encoders: dict[str, RowEncoder] = {}
        self.predictors: dict[tuple[int, str], Predictor] = {}
        self.dictionary = VocabularyDictionary(lambda: self.vocab)

    @classmethod
    def setup_task(cls, cfg: OfasysTaskConfig, **kwargs: Any) -> "OfasysTask":
        return cls(cfg)

    @property
    def seed(self) -> int:
        stored = ((self.stored or {}).get("config", {}).get("train") or {}).get("common") or {}
        return int(stored.get("seed", self.cfg.seed))

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ConfigError(f"--task ofasys: no task {name!r}; tasks: {[task.name for task in self.tasks]}")

    # ---- the model and the criterion -----------------------------------------------------------

    def build_model(self, cfg: Any, from_checkpoint: bool = False) -> Any:
        if ARCH_MODEL_NAME_REGISTRY.get(cfg._name) != MODEL_NAME:
            archs = sorted(name for name, model in ARCH_MODEL_NAME_REGISTRY.items() if model == MODEL_NAME)
            raise ConfigError(f"--task {TASK_NAME} trains the model {MODEL_NAME!r}: give --arch one of {archs}, "
                              f"not {cfg._name!r}")
        return super().build_model(cfg, from_checkpoint)

    def build_criterion(self, cfg: Any, from_checkpoint: bool = False) -> Any:
        if cfg._name != CRITERION_NAME:
            raise ConfigError(f"--task {TASK_NAME} trains with --criterion {CRITERION_NAME} (each task's ofasys_fs "
                              f"criterion), not {cfg._name!r}")
        return super().build_criterion(cfg, from_checkpoint)

    def stored_model_description(self) -> Optional[dict]:
        """The model description of an adopted checkpoint (fairseq-generate), else None (build from the flags)."""
        return self.stored["config"] if self.stored is not None else None

    def model_built(self, model: Any) -> None:
        """Called by the model's build: fix the preprocessing the model expects and the tasks' encoders."""
        self.data_cfg = (DataConfig.from_dict(self.stored["config"]["data"]) if self.stored is not None
                         else DataConfig.for_model(model.cfg, self.cfg.truncate_long))
        self.description = model_description(model, self.data_cfg)
        self.encoders = {task.name: RowEncoder.for_task(task, self.vocab, self.data_cfg) for task in self.tasks}

    # ---- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """What ofasys_fs needs for inference, under TASK_STATE_KEY (docs/fairseq.md, "Checkpoints")."""
        if self.description is None:
            return {}
        return {TASK_STATE_KEY: {"vocab": self.vocab.to_dict(), "tasks": [task.to_dict() for task in self.tasks],
                                 "config": {"train": {"common": {"seed": self.cfg.seed}}, **self.description},
                                 "user_dirs": imported_user_dirs()}}

    def load_state_dict(self, state: dict) -> None:
        """Before the model is built (fairseq-generate, fairseq-validate): adopt the checkpoint's vocabulary and
        trained tasks (answers, decoding defaults), reading the rows of the data argument's tasks of the same
        name. When resuming training: check that the vocabulary is the same."""
        payload = (state or {}).get(TASK_STATE_KEY)
        if payload is None:
            return
        vocab = Vocabulary.from_dict(payload["vocab"])
        if self.description is not None:
            if vocab.hash != self.vocab.hash:
                raise CheckpointError("the checkpoint was trained with another vocabulary than the data argument's "
                                      "(vocab section or shard tokenizer)")
            return
        trained = [rebuild_task(stored) for stored in payload["tasks"]]
        given = {task.name: task for task in self.tasks}
        for task in trained:
            if task.name in given:
                task.datasets = given.pop(task.name).datasets
        self.stored, self.vocab, self.tasks = payload, vocab, trained + list(given.values())

    # ---- data ----------------------------------------------------------------------------------

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs: Any) -> None:
        if self.data_cfg is None:
            raise RuntimeError("the ofasys task loads data after the model is built (it fixes the preprocessing)")
        datasets = [TaskDataset(task, split, self.encoders[task.name], self.seed)
                    for task in self.tasks if split in task.datasets]
        if not datasets:
            splits = {task.name: sorted(task.datasets) for task in self.tasks}
            raise ConfigError(f"--task ofasys: no task has a {split!r} split (splits per task: {splits}); add it to "
                              f"the data, or for validation pass --disable-validation or --valid-subset")
        self.datasets[split] = TaskRowsDataset(split, datasets, shuffle=split == self.cfg.train_subset)

    def get_batch_iterator(self, dataset: Any, **kwargs: Any) -> Any:
        """fairseq's iterator; for training, each task's batches in whole steps of one batch per rank, shuffled by
        step (fairseq's grouped shuffling), so that the ranks of a step train one task (TaskRowsDataset)."""
        if isinstance(dataset, TaskRowsDataset) and dataset.shuffle:
            dataset.ranks = kwargs.get("num_shards", 1)
            kwargs["grouped_shuffling"] = True
        return super().get_batch_iterator(dataset, **kwargs)

    def train_step(self, sample: dict, model: Any, criterion: Any, optimizer: Any, update_num: int,
                   ignore_grad: bool = False) -> tuple:
        """fairseq's step; a dummy batch (ours, or fairseq's own with ignore_grad) runs with weight 0, adds no rows
        to the ranks' shared BatchNorm statistics, and reports no sample size or logs."""
        dummy = sample.pop("dummy", False) or ignore_grad
        with rows_not_counted() if dummy else nullcontext():
            loss, size, log = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad=dummy)
        return (loss, 0, {}) if dummy else (loss, size, log)

    def rows(self, task: str, split: str) -> Any:
        return self.task(task).datasets[split]

    @property
    def source_dictionary(self) -> None:
        return None  # the encoder reads instruction pieces, not one source text

    @property
    def target_dictionary(self) -> VocabularyDictionary:
        return self.dictionary

    def max_positions(self) -> None:
        return None  # the model config's max_source/target_positions apply when rows are encoded

    # ---- generation ----------------------------------------------------------------------------

    def build_generator(self, models: list, args: Any, seq_gen_cls: Any = None, extra_gen_cls_kwargs: Any = None,
                        prefix_allowed_tokens_fn: Any = None) -> TaskGenerator:
        return TaskGenerator(self, generation_options(args, self.cfg.generation_args))

    def predictor(self, model: Any, task: str) -> Predictor:
        """The Predictor of a task on `model`, as OFASys.task_predictor builds it for ofasys-generate."""
        key = (id(model), task)
        if key not in self.predictors:
            hub = OFASys(model, self.vocab, self.tasks, self.data_cfg, {"common": {"seed": self.seed}})
            self.predictors[key] = hub.task_predictor(hub.task(task))
        return self.predictors[key]
