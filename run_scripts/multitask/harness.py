"""Generalist versus specialists: does one model trained on N tasks match N models trained on one each?

    python -m run_scripts.multitask.harness [--tasks photo|clipart|demo|all] [--updates-per-task 1500] [--seed 1]
        [--set OPTION=VALUE ...] [--instruction TASK=INSTRUCTION ...] [--decoding-seeds 5] [--out multitask_out]

Through the public API (Task, Trainer, evaluate) it trains one generalist on every task for N x U updates
and, for each task, a specialist on that task alone for U updates (the same per-task budget when the
generalist's batches are shared evenly), scores each on the task's held-out test rows with its metric,
scores the task's trivial rule (and stricter rules where the input allows a shortcut) with the same metric,
a task that decodes by sampling (a sampling seed among its decoding options: speech, images, motion) as the
mean over --decoding-seeds seeds, since one draw of a few dozen generated rows moves its score by much,
and prints task | specialist | generalist | ratio | trivial, then the worst ratio. The ratio is generalist /
specialist, and specialist / generalist for a lower-is-better metric (an error rate): above 1 the generalist
is better. Every Trainer option is the toolkit's default except those given with --set and those a task set
needs (the demo's image tokenizer; docs/multitask.md); --instruction replaces a task's instruction (e.g. to give
its images their own side with `[IMAGE:img,size=32]`). With `--set ema_decay=D` each model is scored with its EMA
weights, the ones its run validates with and OFASys.from_pretrained loads. Not a timed test.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from ofasys_fs import GeneralistModel, Task, Trainer
from ofasys_fs.cli.inference_args import add_generation_args, given_generation_options
from ofasys_fs.inference.evaluate import evaluate, score
from ofasys_fs.tasks.config import TaskConfig, task_from_config

from ..demo.baselines import best_baseline, headline
from ..demo.data_common import SPLITS, SplitSizes, read_split, rng_for
from . import clipart_data, photo_data

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ofasys_fs"


@dataclasses.dataclass
class HarnessTask:
    """A task with its rows per split and the rules it must beat."""

    name: str
    instruction: str
    metric: Union[str, dict]  # a metric's name, or {"name", **options} when its options come from the data
    rows: dict[str, list]  # split -> rows (dicts; generated media as PIL images or absolute paths)
    baseline: str  # trivial rule (run_scripts/demo/baselines.py)
    stricter: tuple[str, ...] = ()
    base_dir: Optional[Path] = None  # where a split's jsonl lives, when it holds relative media paths
    references: Optional[str] = None  # the column the metric compares with (default: the target column)
    generation: dict = dataclasses.field(default_factory=dict)  # decoding options of evaluate (e.g. a sampling seed)

    def task(self) -> Task:
        """The Task to train and score; from data files it is built as ofasys-train builds a config's task, so that a
        built-in name (text_to_speech, text_to_image, text_to_motion) brings its defaults, as in the demo."""
        if self.base_dir:
            data = {split: str(self.base_dir / f"{split}.jsonl") for split in ("train", "test")}
            return task_from_config(TaskConfig(name=self.name, instruction=self.instruction, data=data,
                                               metric=self.metric_name, references=self.references), 0)
        task = Task(name=self.name, instruction=self.instruction, metric=self.metric_name, references=self.references)
        for split in ("train", "test"):
            task.add_dataset(self.rows[split], split)
        return task

    @property
    def metric_name(self) -> str:
        return self.metric["name"] if isinstance(self.metric, dict) else self.metric

    @property
    def candidates(self) -> Optional[str]:
        """The column of the row's candidate boxes, for a task whose stricter rule boxes one of them (grounding)."""
        return next((rule.partition(":")[2] for rule in self.stricter
                     if rule.startswith("random_of:") and self.metric_name == "acc_iou"), None)

    @property
    def target(self) -> str:
        """The column the model generates (and the trivial rules predict)."""
        return Task(name=self.name, instruction=self.instruction).target_column()


TaskSet = tuple[list[HarnessTask], dict]  # the tasks, and the Trainer options every run of them needs


PHOTO_TASKS = {  # name -> (instruction, metric, trivial rule, stricter rules)
    "photo_texture": ("[IMAGE:img] which photo is this a part of? -> [TEXT:label,closed_set]", "accuracy",
                      "majority", ()),
    "photo_caption": ("[IMAGE:img] what does the image describe? -> [TEXT:cap]", "cider", "majority", ()),
    "photo_grounding": ('[IMAGE:img] which region does the text " [TEXT:text] " describe? -> [BOX:box]', "acc_iou",
                        "mean_box", ("random_of:boxes",)),
}
PHOTO_SIZES = SplitSizes(2000, 0, 300)


def built_tasks(specs: dict, builders: dict, source, seed: int, rows_factor: float) -> TaskSet:
    """One HarnessTask per spec (name -> instruction, metric, trivial rule, stricter rules), its train and test rows
    made by builders[name](source, split, rows, rng) at PHOTO_SIZES x rows_factor."""
    sizes = PHOTO_SIZES.scaled(rows_factor, minimum=4)
    tasks = []
    for name, (instruction, metric, baseline, stricter) in specs.items():
        rows = {split: builders[name](source, split, sizes.of(split), rng_for(seed, name, split))
                for split in ("train", "test")}
        tasks.append(HarnessTask(name, instruction, metric, rows, baseline, stricter))
    return tasks, {}


def photo_tasks(seed: int, rows_factor: float = 1.0, **_) -> TaskSet:
    """The three photo tasks (photo_data.py)."""
    return built_tasks(PHOTO_TASKS, photo_data.BUILDERS, photo_data.Photos(), seed, rows_factor)


CLIPART_TASKS = {  # the kinds of check: classification of real photos, captions and grounding of real drawings
    "photo_texture": PHOTO_TASKS["photo_texture"],
    "clipart_caption": ("[IMAGE:img] what does the image describe? -> [TEXT:cap]", "cider", "majority", ()),
    "clipart_grounding": PHOTO_TASKS["photo_grounding"],
}


def clipart_tasks(seed: int, rows_factor: float = 1.0, **_) -> TaskSet:
    """photo_texture and the two Open Clip Art tasks (clipart_data.py)."""
    return built_tasks(CLIPART_TASKS, clipart_data.BUILDERS, clipart_data.Drawings(), seed, rows_factor)


def demo_tasks(seed: int, out: Path, cache_dir: Path = DEFAULT_CACHE, rows_factor: float = 1.0, **_) -> TaskSet:
    """The demo's tasks (run_scripts/demo/demo_tasks.py) with their metrics' data-dependent options and decoding
    flags, and the image tokenizer text_to_image generates in, trained as the demo trains it."""
    from ..demo.demo_tasks import TASKS, target_column
    from ..demo.image_report import with_absolute
    from ..demo.report import metric_spec
    from ..demo.run_demo import Settings, train_image_tokenizer

    tasks = []
    for spec in TASKS:
        folder = out / "raw" / spec.name
        spec.build(folder, spec.sizes.scaled(rows_factor), seed, cache_dir)
        rows = {split: read_split(folder, split) for split in SPLITS}
        if Task(name=spec.name, instruction=spec.instruction).instruction.output_modality != "TEXT":
            # generated media: the rules predict training files, and the judges read the real ones, from anywhere
            rows = {split: with_absolute(part, folder, target_column(spec)) for split, part in rows.items()}
        tasks.append(HarnessTask(spec.name, spec.instruction, metric_spec(spec, rows["train"], rows["test"]), rows,
                                 spec.baseline, spec.stricter, folder, spec.references,
                                 generation_options(spec.generate_flags)))
    tokenizer = train_image_tokenizer(out, Settings.tokenizer_updates, seed)
    return tasks, {"image_tokenizer": str(tokenizer)}


def generation_options(flags: Sequence[str]) -> dict:
    """ofasys-generate's generation flags (a DemoTask's generate_flags) -> evaluate's options."""
    parser = argparse.ArgumentParser()
    add_generation_args(parser)
    return given_generation_options(parser.parse_args(list(flags)))


TASK_SETS: dict[str, Callable[..., TaskSet]] = {"photo": photo_tasks, "clipart": clipart_tasks, "demo": demo_tasks}


def train(tasks: Sequence[HarnessTask], updates: int, options: dict, seed: int) -> tuple[GeneralistModel, Trainer]:
    trainer = Trainer(**{"arch": "micro", "seed": seed, "max_update": updates, "no_save": True,
                         "disable_validation": True, "log_interval": max(updates // 5, 1), "log_format": "simple",
                         "device": "cpu", **options})
    model = trainer.fit(tasks=[task.task() for task in tasks])
    if trainer.ema is not None:  # the weights a run validates with and OFASys.from_pretrained loads by default
        trainer.ema.copy_to(model)
    return model, trainer


def decoding_seeds(spec: HarnessTask, count: int) -> list[Optional[int]]:
    """The sampling seeds a task is scored with: `count` seeds from its own for a task that samples, else none."""
    first = spec.generation.get("sampling_seed")
    return [None] if first is None else [first + i for i in range(count)]


def test_score(model: GeneralistModel, trainer: Trainer, spec: HarnessTask,
               seeds: Sequence[Optional[int]] = (None,)) -> tuple[list[float], Optional[bool], Optional[float]]:
    """(the metric's headline on the test rows for each decoding seed, whether higher is better, and for grounding
    the share of boxes on any of the row's candidates: named or not, the model found an object there)."""
    task = next(t for t in trainer.tasks if t.name == spec.name)
    scores, higher_is_better, on_any = [], None, None
    for seed in seeds:
        options = spec.generation if seed is None else {**spec.generation, "sampling_seed": seed}
        evaluation = evaluate(model, task, "test", encoder=trainer.encoders[spec.name], batch_size=100,
                              metric=spec.metric, options=options)
        scores.append(headline(spec.metric_name, evaluation.metrics))
        higher_is_better = evaluation.higher_is_better
        if spec.candidates and on_any is None:
            candidates = [spec.rows["test"][index][spec.candidates] for index in evaluation.indices]
            on_any = score(spec.metric, evaluation.predictions, candidates)[0][spec.metric_name]
    return scores, higher_is_better, on_any


def trivial_scores(spec: HarnessTask) -> tuple[float, Optional[float]]:
    """(trivial rule's score, best stricter rule's score or None) on the test rows."""
    train_rows, test_rows = spec.rows["train"], spec.rows["test"]
    _, trivial = best_baseline((spec.baseline,), spec.metric, spec.target, train_rows, test_rows, spec.references)
    stricter = None
    if spec.stricter:
        _, values = best_baseline(spec.stricter, spec.metric, spec.target, train_rows, test_rows, spec.references)
        stricter = headline(spec.metric_name, values)
    return headline(spec.metric_name, trivial), stricter


def ratio(specialist: float, generalist: float, higher_is_better: bool) -> float:
    """generalist / specialist, or specialist / generalist for a lower-is-better metric: above 1 the generalist is
    better either way."""
    numerator, denominator = (generalist, specialist) if higher_is_better else (specialist, generalist)
    if denominator == 0:  # 0 against 0 is a tie; without a generalist (NaN) there is no ratio
        return math.inf if numerator > 0 else (1.0 if numerator == 0 else math.nan)
    return numerator / denominator


def run(tasks: Sequence[HarnessTask], updates_per_task: int, options: dict, seed: int,
        with_generalist: bool = True, seeds_per_task: int = 1, with_specialists: bool = True) -> list[dict]:
    """Train the generalist and the specialists (without one or the other: a quick ablation); one result row per
    task, a sampling task scored as its mean over seeds_per_task draws."""
    started = time.perf_counter()
    seeds = {spec.name: decoding_seeds(spec, seeds_per_task) for spec in tasks}
    unscored = ([float("nan")], None, None)
    general = {spec.name: unscored for spec in tasks}
    if with_generalist:
        generalist, trainer = train(tasks, updates_per_task * len(tasks), options, seed)
        general = {spec.name: test_score(generalist, trainer, spec, seeds[spec.name]) for spec in tasks}
    seconds = {"generalist": time.perf_counter() - started}
    results = []
    for spec in tasks:
        started = time.perf_counter()
        special = unscored
        if with_specialists:
            specialist, trainer = train([spec], updates_per_task, options, seed)
            special = test_score(specialist, trainer, spec, seeds[spec.name])
            seconds[spec.name] = time.perf_counter() - started
        trivial, stricter = trivial_scores(spec)
        (special, special_direction, special_any), (general_scores, general_direction, general_any) = (
            special, general[spec.name])
        higher_is_better = special_direction if special_direction is not None else general_direction
        mean_special, mean_general = sum(special) / len(special), sum(general_scores) / len(general_scores)
        results.append({"task": spec.name, "metric": spec.metric_name, "higher_is_better": higher_is_better,
                        "specialist": mean_special, "generalist": mean_general,
                        "ratio": ratio(mean_special, mean_general, higher_is_better),
                        "trivial": trivial, "stricter": stricter, "decoding_seeds": seeds[spec.name],
                        "specialist_per_seed": special, "generalist_per_seed": general_scores,
                        "specialist_on_any": special_any, "generalist_on_any": general_any})
    print("harness: seconds " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), flush=True)
    return results


def table(results: Sequence[dict]) -> str:
    lines = ["| task | metric | specialist | generalist | ratio | trivial | stricter |", "|---|---|---|---|---|---|---|"]
    for r in results:
        stricter = "-" if r["stricter"] is None else f"{r['stricter']:.3f}"
        metric = r["metric"] if r["higher_is_better"] else f"{r['metric']} (lower is better)"
        lines.append(f"| {r['task']} | {metric} | {r['specialist']:.3f} | {r['generalist']:.3f} | "
                     f"{r['ratio']:.2f} | {r['trivial']:.3f} | {stricter} |")
    for r in results:
        if len(r["decoding_seeds"]) > 1:
            seeds = r["decoding_seeds"]
            lines.append(f"\n{r['task']}: the mean of {len(seeds)} decoding seeds {seeds[0]}-{seeds[-1]}; specialist "
                         f"{spread(r['specialist_per_seed'])}, generalist {spread(r['generalist_per_seed'])}")
    for r in results:
        special, general = r.get("specialist_on_any"), r.get("generalist_on_any")
        if special is not None or general is not None:
            special, general = (math.nan if value is None else value for value in (special, general))
            lines.append(f"\n{r['task']}: boxes on any of the row's objects, named or not: specialist {special:.3f}, "
                         f"generalist {general:.3f} (above {r['metric']}: another object boxed; the rest miss by place)")
    worst = min(results, key=lambda r: r["ratio"])
    lines.append(f"\nworst ratio: {worst['ratio']:.2f} ({worst['task']}); ratio: generalist / specialist, for a "
                 "lower-is-better metric specialist / generalist (above 1: the generalist is better)")
    return "\n".join(lines)


def spread(values: Sequence[float]) -> str:
    return f"[{min(values):.3f}..{max(values):.3f}]" if len(values) > 1 else f"{values[0]:.3f}"


def with_instructions(tasks: list[HarnessTask], pairs: Sequence[str]) -> list[HarnessTask]:
    """--instruction TASK=INSTRUCTION pairs applied to the named tasks; an unknown task name is an error."""
    instructions = {}
    for pair in pairs:
        name, eq, instruction = pair.partition("=")
        if not eq or name not in {task.name for task in tasks}:
            raise SystemExit(f"--instruction expects TASK=INSTRUCTION with TASK one of "
                             f"{', '.join(task.name for task in tasks)}; got {pair!r}")
        instructions[name] = instruction
    return [dataclasses.replace(task, instruction=instructions.get(task.name, task.instruction)) for task in tasks]


def parse_options(pairs: Sequence[str]) -> dict:
    """--set key=value pairs -> Trainer options (values parsed as YAML scalars: 1e-3, true, 64)."""
    import yaml

    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise SystemExit(f"--set expects OPTION=VALUE, got {pair!r}")
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return options


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="photo", choices=[*TASK_SETS, "all"])
    parser.add_argument("--updates-per-task", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a Trainer option for every run (repeatable), e.g. --set sampling=round_robin")
    parser.add_argument("--instruction", action="append", default=[], metavar="TASK=INSTRUCTION",
                        help="replace a task's instruction (repeatable)")
    parser.add_argument("--only", help="comma-separated task names: run only these tasks of the set")
    only_one = parser.add_mutually_exclusive_group()
    only_one.add_argument("--specialists-only", action="store_true", help="skip the generalist (quick ablations)")
    only_one.add_argument("--generalist-only", action="store_true", help="skip the specialists (quick ablations)")
    parser.add_argument("--decoding-seeds", type=int, default=5,
                        help="a task that decodes by sampling is scored as the mean over this many sampling seeds")
    parser.add_argument("--rows-factor", type=float, default=1.0, help="fraction of each task's rows (smoke runs)")
    parser.add_argument("--out", default="multitask_out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    names = list(TASK_SETS) if args.tasks == "all" else [args.tasks]
    tasks, options = [], {}
    for name in names:
        set_tasks, set_options = TASK_SETS[name](args.seed, out=out, rows_factor=args.rows_factor)
        known = {task.name for task in tasks}  # photo_texture is in two sets: trained and scored once
        tasks, options = tasks + [task for task in set_tasks if task.name not in known], {**options, **set_options}
    if args.only:
        tasks = [task for task in tasks if task.name in args.only.split(",")]
    tasks = with_instructions(tasks, args.instruction)
    options.update(parse_options(args.set))
    results = run(tasks, args.updates_per_task, options, args.seed, not args.specialists_only, args.decoding_seeds,
                  not args.generalist_only)
    text = table(results)
    print(text, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results_seed{args.seed}.json").write_text(json.dumps(
        {"seed": args.seed, "options": options, "updates_per_task": args.updates_per_task,
         "decoding_seeds": args.decoding_seeds, "load": os.getloadavg(), "results": results,
         "instructions": {task.name: task.instruction for task in tasks}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
