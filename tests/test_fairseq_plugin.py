"""fairseq interop (docs/fairseq.md): ofasys_fs/fairseq_plugin as fairseq's --user-dir. The commands docs/fairseq.md
prints run as printed: fairseq-train trains a micro model whose loss falls, fairseq-generate and ofasys-generate
decode the same hypotheses from its checkpoint and from a converted ofasys_fs checkpoint, and shards go both ways.
Skipped where fairseq is not installed (`make fairseq`; `make test` installs it)."""
import argparse
import gc
import json
import logging
import math
import multiprocessing
import os
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("fairseq", reason="fairseq is not installed (an optional extra): `make fairseq` installs it, and "
                                      "`make test` runs that first")

from fairseq.data import indexed_dataset  # noqa: E402
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter  # noqa: E402

import ofasys_fs.fairseq_plugin  # noqa: E402,F401  (registers the task, model, criterion and archs)
from ofasys_fs.cli import generate as ofasys_generate  # noqa: E402
from ofasys_fs.cli import preprocess as ofasys_preprocess  # noqa: E402
from ofasys_fs.data.indexed import IndexedDataset, IndexedWriter  # noqa: E402
from ofasys_fs.data.shards import ShardDataset, ShardWriter  # noqa: E402
from ofasys_fs.engine.distributed import free_port  # noqa: E402
from ofasys_fs.errors import ConfigError  # noqa: E402
from ofasys_fs.fairseq_plugin import checkpoints  # noqa: E402
from ofasys_fs.fairseq_plugin.generator import generation_options  # noqa: E402
from ofasys_fs.fairseq_plugin.model import register_archs  # noqa: E402
from ofasys_fs.fairseq_plugin.task import OfasysTask, OfasysTaskConfig  # noqa: E402
from ofasys_fs.hub import OFASys  # noqa: E402
from ofasys_fs.models import cpu_linear  # noqa: E402
from ofasys_fs.models.task_batch_norm import TaskBatchNorm2d  # noqa: E402
from ofasys_fs.registry import ARCH_MODEL, ARCH_REGISTRY, register_model_architecture  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "fairseq.md"
TASKS = ("caption", "grounding", "topic")  # in the order of the doc's tasks.yaml


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def doc_commands() -> list[list[str]]:
    """Every command of the doc's sh blocks (continuation lines joined) as argv; `make fairseq` is run by make test."""
    lines = [line for block in doc_blocks("sh") for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line) for line in lines if line.strip() and line.split()[0] != "make"]


class LogLines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append((record.name, record.getMessage()))


def stop_loader_workers() -> None:
    """Stops the DataLoader workers of the iterators a fairseq CLI leaves behind (a run that stops at --max-update
    mid-epoch). Freed later by the garbage collector, with their queues in the same reference cycle, their shutdown
    waited out each worker's 5 s poll timeout inside whatever ran next (10 s after fairseq-train; 0.1 s stopped here)."""
    for loader in [item for item in gc.get_objects() if isinstance(item, _MultiProcessingDataLoaderIter)]:
        loader._shutdown_workers()


def run_fairseq(main, argv):
    """A fairseq CLI in this process, with sys.argv patched; returns the (logger, message) pairs it logged.

    fairseq starts its DataLoader workers from a background thread; forked from this test process, whose other
    threads (xdist's, tqdm's) may hold a lock at that moment, a worker once hung for good in the fork's child
    handlers. The forkserver start method forks them from a clean single-threaded server instead."""
    handler, saved, root = LogLines(), sys.argv, logging.getLogger()
    level, method = root.level, multiprocessing.get_start_method(allow_none=True)
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # what fairseq's CLIs set up when they own the process
    sys.argv = argv
    multiprocessing.set_start_method("forkserver", force=True)
    multiprocessing.set_forkserver_preload(["torch", "fairseq", "ofasys_fs.fairseq_plugin"])
    try:
        main()
    finally:
        stop_loader_workers()
        multiprocessing.set_start_method(method, force=True)
        sys.argv = saved
        root.removeHandler(handler)
        root.setLevel(level)
    return handler.lines


def run(argv: list[str]) -> list[tuple[str, str]]:
    """One printed command, in this process."""
    if argv[0] == "fairseq-train":
        from fairseq_cli import train
        return run_fairseq(train.cli_main, argv)
    if argv[0] == "fairseq-generate":
        from fairseq_cli import generate
        return run_fairseq(generate.cli_main, argv)
    main = {"ofasys-generate": ofasys_generate.main, "ofasys-fairseq-convert": checkpoints.main}[argv[0]]
    assert main(argv[1:]) == 0, argv
    return []


@pytest.fixture(scope="module", autouse=True)
def linear_layers_by_f_linear():
    """fairseq's beam search drops finished sentences from its batch, so it decodes with matmuls of other row counts
    than ofasys-generate; the scores compared below agree to the last bit only if a row's result does not depend on
    the row count. With oneDNN forced (conftest.py) they were 3e-7 apart on an AMD EPYC; with F.linear, which
    models/cpu_linear.py picks wherever it is faster, equal. So this module's runs use F.linear."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_linear, "onednn_pays", lambda: False)
        yield


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, trained_checkpoint):
    """The doc's layout: data/ (tasks.yaml from the doc; caption as shards, grounding and topic as JSON lines),
    ckpt/ (the session's ofasys_fs checkpoint, trained on the same tasks), and ofasys_fs/ (the package)."""
    root = tmp_path_factory.mktemp("fairseq")
    (root / "ofasys_fs").symlink_to(REPO / "ofasys_fs")
    (root / "ckpt").mkdir()
    (root / "ckpt" / "checkpoint_last.pt").symlink_to(trained_checkpoint.path)
    data = root / "data"
    data.mkdir()
    (data / "tasks.yaml").write_text(doc_blocks("yaml")[0], encoding="utf-8")
    for split in ("train", "valid", "test"):
        assert ofasys_preprocess.main(["--input", trained_checkpoint.data_file("caption", split), "--destdir",
                                       str(data / "caption"), "--split", split, "--instruction",
                                       trained_checkpoint.instructions["caption"]]) == 0
    for name in ("grounding", "topic"):
        (data / name).symlink_to(os.path.join(trained_checkpoint.data_dir, name))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        yield root


@pytest.fixture(scope="module")
def commands(workdir):
    """Runs the doc's commands in order; returns the log lines of each."""
    return [(argv, run(argv)) for argv in doc_commands()]


def fairseq_results(path: pathlib.Path) -> dict:
    """id -> {"T": reference, "H": (score, text), "P": positional scores} of a fairseq-generate results file."""
    results: dict = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        kind, _, rest = line.partition("-")
        if kind not in ("T", "H", "P") or not rest.split("\t")[0].isdigit():
            continue
        fields = rest.split("\t")
        entry = results.setdefault(int(fields[0]), {})
        if kind == "H":
            entry["H"] = (float(fields[1]), fields[2] if len(fields) > 2 else "")
        elif kind == "P":
            entry["P"] = [float(value) for value in fields[1].split()]
        else:
            entry["T"] = fields[1] if len(fields) > 1 else ""
    return results


def ofasys_results(checkpoint: str, out: pathlib.Path) -> dict:
    """task -> ofasys-generate's rows of its test split, with the doc's decoding flags."""
    rows = {}
    for task in TASKS:
        path = out / f"{task}.jsonl"
        assert ofasys_generate.main(["--path", checkpoint, "--task", task, "--data", f"data/{task}", "--gen-subset",
                                     "test", "--batch-size", "16", "--beam", "5", "--results-path", str(path)]) == 0
        rows[task] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


def assert_same_hypotheses(fairseq: dict, ours: dict, vocab) -> None:
    """Every row: fairseq's H- text is ofasys-generate's tokens decoded (its text for text outputs), the H- score
    in base 2 is ours, and so are the positional scores (printed to 4 decimals)."""
    offset = 0
    for task in TASKS:
        for row in ours[task]:
            score, text = fairseq[offset + row["id"]]["H"]
            assert text == vocab.decode(row["tokens"]).strip(), (task, row)
            if "text" in row:
                assert text == row["text"]
            # fp32 products of different batch shapes may round differently (fairseq batches the rows its own way,
            # and on some CPUs a GEMM's result depends on its row count): equal to float32 precision
            assert score * math.log(2) == pytest.approx(row["score"], rel=1e-5, abs=1e-7)
            expected = [value / math.log(2) for value in row["positional_scores"]]
            assert fairseq[offset + row["id"]]["P"] == pytest.approx(expected, abs=6e-5)
        offset += len(ours[task])
    assert len(fairseq) == offset


def test_fairseq_train_trains_a_micro_model_whose_loss_falls(commands, workdir):
    losses = [float(json.loads(message)["loss"]) for logger, message in commands[0][1] if logger == "train_inner"]
    assert len(losses) == 6  # --max-update 60, --log-interval 10
    assert losses[-1] < losses[0] / 3, losses
    model = OFASys.from_pretrained("checkpoints/checkpoint_last.pt", device="cpu")  # the fairseq checkpoint as it is
    assert (model.model.cfg.arch, model.model.cfg.embed_dim) == ("micro", 64)
    assert [task.name for task in model.tasks] == list(TASKS)
    assert model.task("topic").answers == ["colour", "animal", "number"]


def test_fairseq_generate_equals_ofasys_generate_on_a_fairseq_checkpoint(commands, workdir):
    fairseq = fairseq_results(workdir / "results" / "generate-test.txt")
    ours = ofasys_results("checkpoints/checkpoint_last.pt", workdir / "results" / "ours")
    vocab = OFASys.from_pretrained("checkpoints/checkpoint_last.pt", device="cpu").vocab
    assert_same_hypotheses(fairseq, ours, vocab)
    printed = [json.loads(line) for line in (workdir / "results" / "topic.jsonl").read_text().splitlines()]
    assert printed == ours["topic"]  # the doc's ofasys-generate command
    topic_start = len(ours["caption"]) + len(ours["grounding"])
    assert fairseq[topic_start]["T"] == "colour"  # the reference without the decoder prompt "the topic is"
    correct = sum(row["text"] == fairseq[topic_start + row["id"]]["T"] for row in ours["topic"])
    assert correct >= 0.9 * len(ours["topic"])  # the trained rows are recalled (chance: 1/3)


def test_an_ofasys_checkpoint_converted_decodes_the_same_in_fairseq_generate(commands, workdir):
    fairseq = fairseq_results(workdir / "results_converted" / "generate-test.txt")
    ours = ofasys_results("ckpt/checkpoint_last.pt", workdir / "results_converted" / "ours")
    assert_same_hypotheses(fairseq, ours, OFASys.from_pretrained("ckpt/checkpoint_last.pt", device="cpu").vocab)


def test_fairseq_checkpoint_with_a_namespace_loads_with_the_registered_safe_globals(commands, workdir):
    """A legacy optimizer (sgd) puts an argparse.Namespace in fairseq's config: weights_only refuses it unless
    the plugin registered it, which it did at import."""
    from fairseq import checkpoint_utils, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    args = options.parse_args_and_arch(options.get_training_parser(),
                                       ["data", "--task", "ofasys", "--arch", "micro", "--optimizer", "sgd"])
    state = torch.load("checkpoints/checkpoint_last.pt", weights_only=True)
    state["cfg"] = OmegaConf.to_container(convert_namespace_to_omegaconf(args), resolve=True)
    assert isinstance(state["cfg"]["optimizer"], argparse.Namespace)
    torch.save(state, "legacy.pt")
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(Exception, match="Namespace"):
            torch.load("legacy.pt", weights_only=True)
    finally:
        torch.serialization.add_safe_globals(registered)
    assert checkpoint_utils.load_checkpoint_to_cpu("legacy.pt")["cfg"].optimizer.lr == [0.25]
    assert OFASys.from_pretrained("legacy.pt", device="cpu").tasks[0].name == "caption"


def test_ofasys_train_finetunes_from_a_fairseq_checkpoint(commands, workdir):
    from ofasys_fs.engine.trainer import Trainer
    from ofasys_fs.tasks.base import Task

    task = Task(name="topic", instruction=(
        "[TEXT:sentence] what is the topic? -> the topic is [TEXT:topic,closed_set]")).add_dataset("data/topic")
    trainer = Trainer(arch="micro", device="cpu", num_bins=100, num_codes=0, max_update=1, save_dir="finetuned",
                      finetune_from_model="checkpoints/checkpoint_last.pt", log_interval=1000)
    trainer.fit(tasks=[task])
    report = trainer.finetune_report
    assert report.missing == [] and report.loaded > 20  # the text-only model takes every weight it has
    assert report.unexpected and all(name.startswith("encoder.adaptors.image_patch.") for name in report.unexpected)


def test_importing_the_plugin_keeps_logging_and_sys_path_and_registers_once():
    """As the first importer of fairseq it leaves the root logger as it was; imported again by fairseq as the
    top-level module `fairseq_plugin` (--user-dir), it registers nothing twice and takes the ofasys_fs folder
    fairseq put on sys.path off again."""
    script = ("import argparse, json, logging, sys\nimport ofasys_fs.fairseq_plugin\n"
              "root = logging.getLogger()\nkept = [root.level, len(root.handlers)]\n"
              "from fairseq import utils\nfrom fairseq.tasks import TASK_REGISTRY\n"
              "utils.import_user_module(argparse.Namespace(user_dir='ofasys_fs/fairseq_plugin'))\n"
              "print(json.dumps([kept, 'fairseq_plugin' in sys.modules, TASK_REGISTRY['ofasys'].__module__, "
              "[path for path in sys.path if path.rstrip('/').endswith('ofasys_fs')]]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == [[logging.WARNING, 0], True,
                                                          "ofasys_fs.fairseq_plugin.task", []]


def test_every_generalist_arch_is_a_fairseq_arch_and_plugin_archs_join():
    from fairseq.models import (ARCH_CONFIG_REGISTRY, ARCH_MODEL_INV_REGISTRY, ARCH_MODEL_NAME_REGISTRY,
                                ARCH_MODEL_REGISTRY)

    ours = sorted(name for name, model in ARCH_MODEL.items() if model == "generalist")
    assert {"micro", "tiny", "huge"} <= set(ours)
    assert all(ARCH_MODEL_NAME_REGISTRY[name] == "ofasys" for name in ours)
    register_model_architecture("generalist", "fairseq_test_plugin_arch")(ARCH_REGISTRY["micro"])
    register_model_architecture("generalist", "transformer_iwslt_de_en")(ARCH_REGISTRY["micro"])  # fairseq's name
    try:
        assert register_archs() == ["fairseq_test_plugin_arch"]
        assert ARCH_MODEL_NAME_REGISTRY["transformer_iwslt_de_en"] == "transformer"
        assert register_archs() == []
    finally:
        for registry in (ARCH_REGISTRY, ARCH_MODEL):
            registry.pop("fairseq_test_plugin_arch")
            registry.pop("transformer_iwslt_de_en")
        for registry in (ARCH_MODEL_REGISTRY, ARCH_MODEL_NAME_REGISTRY, ARCH_CONFIG_REGISTRY):
            registry.pop("fairseq_test_plugin_arch")
        ARCH_MODEL_INV_REGISTRY["ofasys"].remove("fairseq_test_plugin_arch")


def test_a_shard_folder_is_one_task_with_the_instruction_of_its_manifest(workdir):
    task = OfasysTask.setup_task(OfasysTaskConfig(data="data/caption", seed=1, train_subset="train"))
    assert [(one.name, one.instruction.text, len(one.datasets["train"])) for one in task.tasks] == [
        ("caption", "[IMAGE:img] what does the image describe? -> [TEXT:cap]", 12)]
    with pytest.raises(ConfigError, match="give --instruction for the rows of data/topic"):
        OfasysTask.setup_task(OfasysTaskConfig(data="data/topic", seed=1, train_subset="train"))
    instruction = "[TEXT:sentence] what is the topic? -> the topic is [TEXT:topic,closed_set]"
    topic = OfasysTask.setup_task(OfasysTaskConfig(data="data/topic", instruction=instruction, seed=1,
                                                   train_subset="train"))
    assert topic.tasks[0].closed_set_answers() == ["colour", "animal", "number"]
    assert ofasys_preprocess.main(["--input", "data/topic/train.jsonl", "--destdir", "own_bpe", "--instruction",
                                   instruction, "--train-tokenizer", "--vocab-size", "300"]) == 0
    own = OfasysTask.setup_task(OfasysTaskConfig(data="own_bpe", seed=1, train_subset="train"))
    assert own.vocab.tokenizer_hash == json.loads(pathlib.Path("own_bpe/manifest.json").read_text())["tokenizer_hash"]
    assert own.vocab.tokenizer_hash != task.vocab.tokenizer_hash


@pytest.mark.parametrize("max_tokens", [None, 40])
def test_batches_hold_one_task_each_and_keep_every_row(workdir, max_tokens):
    from omegaconf import OmegaConf

    from ofasys_fs.fairseq_plugin.model import OfasysModelConfig

    task = OfasysTask.setup_task(OfasysTaskConfig(data="data", seed=1, train_subset="train"))
    model_cfg = OmegaConf.structured(OfasysModelConfig())
    model_cfg._name = "micro"
    task.build_model(model_cfg)
    task.load_dataset("train")
    dataset = task.datasets["train"]
    batches = dataset.batch_by_size(dataset.ordered_indices(), max_tokens=max_tokens, max_sentences=5,
                                    required_batch_size_multiple=4)
    assert sorted(int(index) for batch in batches for index in batch) == list(range(32))
    owners = [{dataset.locate(int(index))[0] for index in batch} for batch in batches]
    assert all(len(owner) == 1 for owner in owners)
    assert all(len(batch) <= 5 for batch in batches)
    if max_tokens is not None:
        assert all(len(batch) * max(dataset.num_tokens(int(i)) for i in batch) <= max_tokens for batch in batches)
        assert len(batches) > sum(math.ceil(rows / 5) for rows in (12, 8, 12))  # the budget limits them
    sample = dataset.collater([dataset[int(index)] for index in batches[0]])
    assert sample["task"] in TASKS and sample["id"].tolist() == [int(index) for index in batches[0]]


# fairseq-train whose all_gather_list (logs that cannot be summed, as ours name their task) gathers with gloo: fairseq's
# own allocates CUDA buffers, so it runs on GPU ranks only
FAIRSEQ_TRAIN_ON_CPU_RANKS = """
import sys
import torch.distributed as dist
from fairseq.distributed import utils

def all_gather_list(data, group=None, max_size=16384):
    gathered = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, data, group=group)
    return gathered

utils.all_gather_list = all_gather_list
from fairseq_cli.train import cli_main
sys.argv[0] = "fairseq-train"
cli_main()
"""


def test_two_fairseq_ranks_train_one_task_per_step_and_count_no_dummy_rows(workdir, tmp_path):
    """fairseq-train on 2 CPU ranks (gloo, legacy_ddp): every update's log names one task (the ranks of a step share
    the conv stem's BatchNorm statistics and must run the same modules: ranks on an image task and a text task
    would wait on each other's all-reduce), and the rows of the epoch's updates are each task's rows once, the
    dummy batches of the tasks with an odd number of batches (caption 3, topic 3; grounding 2) counting for none."""
    port = free_port()
    argv = ["-c", FAIRSEQ_TRAIN_ON_CPU_RANKS, "data", "--user-dir", "ofasys_fs/fairseq_plugin", "--task", "ofasys",
            "--arch", "micro", "--criterion", "ofasys_ce", "--optimizer", "adam", "--lr", "0.002", "--batch-size", "4",
            "--required-batch-size-multiple", "1", "--max-epoch", "1", "--save-dir", str(tmp_path),
            "--no-epoch-checkpoints", "--disable-validation", "--log-format", "json", "--log-interval", "1", "--cpu",
            "--ddp-backend", "legacy_ddp", "--distributed-backend", "gloo", "--distributed-world-size", "2",
            "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn"]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    ranks = [subprocess.Popen([sys.executable, *argv, "--distributed-rank", str(rank)], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    try:
        outputs = [rank.communicate(timeout=120)[0] for rank in ranks]
    except subprocess.TimeoutExpired:
        pytest.fail("the two fairseq ranks did not finish in 120 s (ranks on different tasks wait on each other)")
    finally:
        for rank in ranks:
            rank.kill()
    for rank, output in zip(ranks, outputs):
        assert rank.returncode == 0, output[-4000:]
    updates = [json.loads(line.split(":", 2)[2]) for line in outputs[0].splitlines()
               if line.startswith("INFO:train_inner:")]
    assert len(updates) == 5  # 3 + 2 + 3 batches of 4 rows, padded to 4 + 2 + 4, on 2 ranks
    rows: dict = {}
    for update in updates:
        tasks = [key[len("loss_"):] for key, value in update.items() if key.startswith("loss_") and value is not None]
        assert len(tasks) == 1, update
        rows[tasks[0]] = rows.get(tasks[0], 0) + float(update["bsz"])
    assert rows == {"caption": 12, "grounding": 8, "topic": 12}
    stem = OFASys.from_pretrained(str(tmp_path / "checkpoint_last.pt"), device="cpu").model
    norms = [module for module in stem.modules() if isinstance(module, TaskBatchNorm2d)]
    assert norms and all(norm.task_batches.tolist() == [2, 1, 0] for norm in norms)  # caption, grounding steps


def test_a_dummy_batch_runs_with_weight_zero_adds_no_rows_and_logs_nothing(workdir):
    from omegaconf import OmegaConf

    from ofasys_fs.fairseq_plugin.criterion import CriterionConfig, OfasysCriterion
    from ofasys_fs.fairseq_plugin.model import OfasysModelConfig
    from ofasys_fs.models.task_batch_norm import UNCOUNTED

    task = OfasysTask.setup_task(OfasysTaskConfig(data="data", seed=1, train_subset="train"))
    model_cfg = OmegaConf.structured(OfasysModelConfig())
    model_cfg._name = "micro"
    model = task.build_model(model_cfg)
    task.load_dataset("train")
    dataset = task.datasets["train"]
    dataset.ranks = 2
    batches = dataset.batch_by_size(np.arange(len(dataset)), max_sentences=4)
    dummies = [batch for batch in batches if batch.min() >= len(dataset)]
    assert [dataset.locate(int(batch[0]) - len(dataset))[0] for batch in dummies] == [0, 2]  # caption, topic
    criterion, counted = OfasysCriterion(task, CriterionConfig()), []

    def spy(model, sample):
        counted.append(not UNCOUNTED.get())
        return criterion(model, sample)

    class Backward:
        def backward(self, loss):
            loss.backward()

    real = dataset.collater([dataset[int(index)] for index in batches[0]])
    dummy = dataset.collater([dataset[int(index)] for index in dummies[0]])
    assert "dummy" not in real and dummy["dummy"] and dummy["task"] == real["task"] == "caption"
    results = [task.train_step(sample, model, spy, Backward(), 0, ignore_grad=ignore)
               for sample, ignore in ((real, False), (dummy, False), (real, True))]
    assert counted == [True, False, False]
    assert [(size, log) for _, size, log in results[1:]] == [(0, {}), (0, {})]
    assert results[0][1] > 0 and results[0][2]["task"] == "caption" and float(results[1][0]) == 0.0


def test_the_task_refuses_another_model_or_criterion(workdir):
    from omegaconf import OmegaConf

    task = OfasysTask.setup_task(OfasysTaskConfig(data="data/caption", seed=1, train_subset="train"))
    with pytest.raises(ConfigError, match="give --arch one of .*'micro'.*not 'transformer'"):
        task.build_model(OmegaConf.create({"_name": "transformer"}))
    with pytest.raises(ConfigError, match="--criterion ofasys_ce .* not 'cross_entropy'"):
        task.build_criterion(OmegaConf.create({"_name": "cross_entropy"}))


def test_generation_flags_map_to_ours_and_those_without_a_counterpart_are_refused():
    from fairseq.dataclass.configs import GenerationConfig

    given = GenerationConfig(beam=3, max_len_b=20, sampling=True, sampling_topk=4)
    assert generation_options(given, '{"exhaustive": true}') == {
        "beam": 3, "max_len_b": 20, "do_sample": True, "sampling_topk": 4, "exhaustive": True}
    assert generation_options(GenerationConfig(), "{}") == {}
    with pytest.raises(ConfigError, match="--prefix-size"):
        generation_options(GenerationConfig(prefix_size=1), "{}")
    with pytest.raises(ConfigError, match="exhaustiv"):
        generation_options(GenerationConfig(), '{"exhaustiv": true}')


# ---- shards both ways -------------------------------------------------------------------------------------------

ROWS = [{"text": "héllo wörld", "media": b"\x89PNG\r\n\x1a\n" + bytes(range(40)), "meta": {"n": 1, "xs": [1.5]}},
        {"text": "", "media": b"RIFF\x00\x00\x00\x00WAVE", "meta": None},
        {"text": "third row", "media": bytes(300), "meta": [None, "a"]}]
TOKENS = [[0, 5, 65000, 2], [], [7] * 50, [1, 2, 3]]


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64])
def test_fairseq_reads_our_token_and_byte_columns_record_by_record(tmp_path, dtype):
    writer = IndexedWriter(tmp_path / "tokens", dtype)
    for item in TOKENS:
        writer.add(np.array(item, dtype=dtype))
    writer.finalize()
    theirs = indexed_dataset.MMapIndexedDataset(str(tmp_path / "tokens"))
    assert theirs._index.dtype == dtype and list(theirs.sizes) == [len(item) for item in TOKENS]
    assert [theirs[i].tolist() for i in range(len(TOKENS))] == TOKENS
    with ShardWriter(tmp_path / "shards", "train") as shard:
        for row in ROWS:
            shard.add_row(row)
        shard.finalize()
    ours = ShardDataset(tmp_path / "shards", "train")
    for column in ROWS[0]:
        theirs = indexed_dataset.MMapIndexedDataset(str(tmp_path / "shards" / f"train.{column}"))
        assert len(theirs) == len(ROWS)
        for index in range(len(ROWS)):
            assert theirs[index].numpy().astype(np.uint8).tobytes() == ours._data[column].item_bytes(index)
    assert [ours[i] for i in range(len(ROWS))] == ROWS


@pytest.mark.parametrize("vocab_size", [50000, 100000])  # fairseq picks uint16, then uint32
def test_we_read_what_fairseqs_builder_writes(tmp_path, vocab_size):
    prefix = str(tmp_path / "tokens")
    builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=vocab_size)
    for item in TOKENS:
        builder.add_item(torch.tensor(item, dtype=torch.long))
    builder.finalize(prefix + ".idx")
    ours = IndexedDataset(prefix)
    assert ours.dtype == indexed_dataset.best_fitting_int_dtype(vocab_size)
    assert [ours[i].tolist() for i in range(len(TOKENS))] == TOKENS
    folder = tmp_path / "shards"
    folder.mkdir()
    columns = {"text": "text", "media": "media", "meta": "json"}
    encoded = {"text": lambda v: v.encode("utf-8"), "media": bytes,
               "meta": lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8")}
    for column, kind in columns.items():
        builder = indexed_dataset.MMapIndexedDatasetBuilder(str(folder / f"train.{column}.bin"), dtype=np.uint8)
        for row in ROWS:
            value = row[column]
            builder.add_item(torch.from_numpy(np.frombuffer(encoded[column](value) if value is not None else b"",
                                                            dtype=np.uint8).copy()))
        builder.finalize(str(folder / f"train.{column}.idx"))
    manifest = {"version": 1, "splits": {"train": {"rows": len(ROWS), "columns": {
        "text": {"kind": "text"}, "media": {"kind": "media"}, "meta": {"kind": "json", "null_rows": [1]}}}}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert [ShardDataset(folder, "train")[i] for i in range(len(ROWS))] == ROWS

