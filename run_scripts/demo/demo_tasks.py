"""The demo's tasks: instruction, metric, data builder, split sizes and trivial baseline of each.

All of them are trained into ONE model; together their inputs cover IMAGE, TEXT, BOX, AUDIO, STRUCT and VIDEO,
and their outputs TEXT, BOX, AUDIO, IMAGE and MOTION.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

from ofasys_fs.tasks.base import Task
from ofasys_fs.tasks.image_generation import TextToImage

from .data_common import SplitSizes
from .data_digits import build_digit_classify, build_digit_grounding, build_digit_motion, build_digit_region
from .data_images import build_digit_images
from .data_iris import build_iris
from .data_motion import build_cmu_motion
from .data_reuters import build_reuters_topic
from .data_speech import build_spoken_digits
from .data_tts import build_tts_digits
from .data_vqa import build_easy_vqa


@dataclasses.dataclass(frozen=True)
class DemoTask:
    """One task of the demo and how to build, score and beat-check it."""

    name: str
    instruction: str
    metric: str  # a registered metric; its first value is the table's number
    inputs: str  # for the table: which modalities go in and what comes out
    source: str  # for the README: where the data comes from, and what is real or synthetic
    sizes: SplitSizes  # rows of the full demo
    build: Callable[[Path, SplitSizes, int, Path], None]  # (folder, sizes, seed, cache_dir)
    baseline: str  # the trivial rule of baselines.py (majority, mean_box, fixed_clip) every task must clearly beat
    stricter: tuple[str, ...] = ()  # rules that see part of the input; the table shows the best of them
    share: float = 1.0  # relative share of the training batches (harder tasks get more)
    references: Optional[str] = None  # the column the metric compares with (default: the target column)
    # the metric's options from the (train, test) rows with absolute media paths, e.g. the real images of a judge
    metric_options: Optional[Callable[[list, list], dict]] = None
    generate_flags: tuple = ()  # ofasys-generate flags of the task's predictions (e.g. the seed of sampling)
    variants: tuple = ()  # (name, ofasys-generate flags): other decoding settings reported beside the table


def judged_by_a_classifier(train_rows: list[dict], test_rows: list[dict]) -> dict:
    """classifier_accuracy's judge: a classifier trained on the real training scans; its accuracy on the real test
    scans is reported beside the model's as the ceiling."""
    return {"train_data": train_rows, "test_data": test_rows, "image_column": "img", "label_column": "label"}


def judged_by_a_motion_classifier(train_rows: list[dict], test_rows: list[dict]) -> dict:
    """motion_accuracy's judge: a motion classifier trained on every 24-frame window (4 frames apart) of the real
    training spans; its accuracy on the real test windows is reported as the ceiling (tests/test_motion_learning.py's
    settings)."""
    return {"classifier_train": train_rows, "classifier_test": test_rows, "motion_column": "motion",
            "label_column": "text", "window": 24, "stride": 4}


def ignoring_cache(builder: Callable[[Path, SplitSizes, int], None]) -> Callable[[Path, SplitSizes, int, Path], None]:
    return lambda folder, sizes, seed, cache_dir: builder(folder, sizes, seed)


TASKS = (
    DemoTask(name="digits", instruction="[IMAGE:img] what digit is this? -> [TEXT:label,closed_set]",
             metric="accuracy", inputs="IMAGE -> TEXT",
             source="scikit-learn digits (real 8x8 scans), one on a synthetic 48 px canvas",
             sizes=SplitSizes(1000, 64, 300), build=ignoring_cache(build_digit_classify),
             baseline="majority", share=0.8),
    DemoTask(name="digit_grounding",
             instruction='[IMAGE:img] which region does the text " [TEXT:cap] " describe? -> [TEXT:cap,no_loss] '
                         '[BOX:patch_boxes]',
             metric="acc_iou", inputs="IMAGE + TEXT -> BOX",
             source="real digits placed on a synthetic 48 px 2 x 2 canvas", sizes=SplitSizes(3000, 64, 300),
             build=ignoring_cache(build_digit_grounding),
             baseline="mean_box", stricter=("random_of:digit_boxes",), share=1.8),
    DemoTask(name="digit_region",
             instruction="[IMAGE:img] which digit is in the region [BOX:region] ? -> [TEXT:label,closed_set]",
             metric="accuracy", inputs="IMAGE + BOX -> TEXT",
             source="real digits placed on a synthetic 48 px 2 x 2 canvas, 2-3 per canvas",
             sizes=SplitSizes(3000, 64, 300), build=ignoring_cache(build_digit_region),
             baseline="majority", stricter=("random_of:digits",), share=3),
    DemoTask(name="easy_vqa", instruction="[IMAGE:img] [TEXT:question] -> [TEXT:answer,closed_set]",
             metric="accuracy", inputs="IMAGE + TEXT -> TEXT",
             source="easy-VQA (synthetic shapes, generated questions)",
             sizes=SplitSizes(8000, 64, 300), build=ignoring_cache(build_easy_vqa),
             baseline="majority", stricter=("majority_per:question",), share=3),
    DemoTask(name="spoken_digits", instruction="[AUDIO:wav] which number is spoken? -> [TEXT:label,closed_set]",
             metric="accuracy", inputs="AUDIO -> TEXT",
             source="digit names spoken by eSpeak NG (synthetic speech; test voices unseen in training)",
             sizes=SplitSizes(800, 64, 300), build=ignoring_cache(build_spoken_digits),
             baseline="majority", share=0.4),
    DemoTask(name="reuters_topic",
             instruction='what is the topic of the news " [TEXT:text,uncased] "? -> [TEXT:topic,closed_set]',
             metric="accuracy", inputs="TEXT -> TEXT", source="Reuters-21578 paragraphs from r-cran-tm (real newswire)",
             sizes=SplitSizes(1000, 64, 300), build=build_reuters_topic, baseline="majority", share=1.2),
    DemoTask(name="iris_species",
             instruction='table: " [STRUCT:flower] " which iris species is this? -> [TEXT:species,closed_set]',
             metric="accuracy", inputs="STRUCT -> TEXT", source="Fisher's iris measurements from scikit-learn (real)",
             sizes=SplitSizes(100, 15, 35), build=ignoring_cache(build_iris), baseline="majority", share=0.3),
    DemoTask(name="digit_motion",
             instruction="[VIDEO:video,num_frames=4] which way does the digit move? -> [TEXT:direction,closed_set]",
             metric="accuracy", inputs="VIDEO -> TEXT",
             source="a real digit sliding across 8 frames (synthetic motion)",
             sizes=SplitSizes(800, 64, 300), build=ignoring_cache(build_digit_motion),
             baseline="majority", share=0.4),
    DemoTask(name="text_to_speech", instruction="[PHONE:text] -> [AUDIO:wav]",
             metric="asr_wer", inputs="PHONE -> AUDIO",
             source="two digit names spoken by flite's kal16 voice (synthetic speech; test pairs unseen in training)",
             sizes=SplitSizes(240, 8, 40), build=ignoring_cache(build_tts_digits), baseline="fixed_clip", share=3.5,
             references="text", generate_flags=("--sampling-seed", "1")),  # seeds the prenet dropout of decoding
    DemoTask(name="text_to_image", instruction=TextToImage.default_instruction, metric="classifier_accuracy",
             inputs="TEXT -> IMAGE", source="scikit-learn digits (real 8x8 scans) for captions like 'a handwritten "
                                            "seven'", sizes=SplitSizes(1078, 64, 300),
             build=ignoring_cache(build_digit_images), baseline="random_train", share=0.8, references="label",
             metric_options=judged_by_a_classifier, generate_flags=("--sampling-seed", "1"),
             variants=(("without_guidance", ("--guidance-scale", "1")), ("greedy", ("--no-do-sample",)))),
    # the prompt is the clip's CMU description; 0.8 s at 30 fps, generated by 20 guided DDIM steps (as
    # tests/test_motion_learning.py); a few hundred updates suffice, so it gets few of the batches
    DemoTask(name="text_to_motion", instruction="[TEXT:text] -> [MOTION:motion,max_length=24]",
             metric="motion_accuracy", inputs="TEXT -> MOTION",
             source="two CMU motion-capture clips (real) from Debian's assimp-testmodels, each window labelled with "
                    "its clip's description; test windows from time ranges never trained on",
             sizes=SplitSizes(48, 8, 30), build=build_cmu_motion, baseline="random_train", share=0.3,
             references="text", metric_options=judged_by_a_motion_classifier,
             generate_flags=("--diffusion-steps", "20", "--guidance-scale", "3", "--sampling-seed", "0")),
)


def predictions_file(out: Path, name: str) -> Path:
    """Where ofasys-generate writes the predictions of `name` (a task, or a task's decoding variant): a folder of
    its own, since generated media go into test-media/ beside the file."""
    return out / "predictions" / name / "generate-test.jsonl"


def target_column(task: DemoTask) -> str:
    """The column the metric reads references from (the instruction's target)."""
    return Task(name=task.name, instruction=task.instruction).references
