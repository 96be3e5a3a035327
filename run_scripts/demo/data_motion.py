"""Real motion capture: CMU clips (BVH) that Debian's package `assimp-testmodels` ships in
/usr/share/assimp/models/BVH (CMU's terms: free for research and commercial use, stated in the package's
01_nn.bvh.source.txt). Installed, or fetched once into the cache folder (debian_package.py).

The demo's text_to_motion rows: time spans of the two subject-01 clips, each labelled with its clip's CMU
description; the first 21.6 s of each clip in 2.4 s blocks, every third block held out of training (valid and
test windows come only from those), as tests/test_motion_learning.py does.

    python -m run_scripts.demo.data_motion     # `make test` runs it first; says where the clips are
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np

from .data_common import SPLITS, SplitSizes, write_split
from .debian_package import DEFAULT_CACHE, PackageUnavailable, find_package_files, package_files

PACKAGE = "assimp-testmodels"
FOLDER = "usr/share/assimp/models/BVH"
# CMU subject 01 (one skeleton of 31 joints, 120 fps) with CMU's descriptions; Boxing_Toes has another skeleton
DESCRIPTIONS = {"01_01.bvh": "playground - forward jumps, turn around", "01_03.bvh": "climb, hang, swing"}
CLIPS = (*DESCRIPTIONS, "Boxing_Toes.bvh")
BLOCK_SECONDS, BLOCKS, HELD_OUT_EVERY = 2.4, 9, 3  # blocks 2, 5, 8 of each clip are held out
STEP_SECONDS = 0.4  # between the starts of a block's spans
# training spans are longer than the 0.8 s window (24 frames at 30 fps) the task reads: a random window of each
# every epoch; valid and test spans are the window itself, valid ones halfway between the test ones
SPANS = {"train": (1.2, 0.0), "valid": (0.8, 0.2), "test": (0.8, 0.0)}  # split -> (seconds, offset)


def cmu_clips(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The folder holding CLIPS: the installed package's, else unpacked into `cache_dir` on first use."""
    return package_files(PACKAGE, FOLDER, cache_dir, CLIPS)


def installed_cmu_clips(cache_dir: Path = DEFAULT_CACHE) -> Optional[Path]:
    """The folder holding CLIPS when installed or already cached (nothing is fetched), else None."""
    return find_package_files(PACKAGE, FOLDER, cache_dir, CLIPS)


def held_out(block: int) -> bool:
    return block % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def motion_spans(clips: Path, split: str) -> list[dict]:
    """Every row of `split`: {"text": the clip's description, "motion": {"path", "start", "end"}}, clip by clip
    (absolute paths: ofasys-preprocess keeps MOTION values as they are, so shards refer to the installed clips)."""
    length, offset = SPANS[split]
    rows = []
    for name, description in DESCRIPTIONS.items():
        for block in (block for block in range(BLOCKS) if held_out(block) == (split != "train")):
            for index in range(int((BLOCK_SECONDS - length - offset) / STEP_SECONDS + 1e-6) + 1):  # inside it
                start = round(block * BLOCK_SECONDS + offset + index * STEP_SECONDS, 3)
                rows.append({"text": description,
                             "motion": {"path": str(clips / name), "start": start, "end": round(start + length, 3)}})
    return rows


def build_cmu_motion(folder: Path, sizes: SplitSizes, seed: int, cache_dir: Path) -> None:
    """text_to_motion rows per split: `sizes` evenly spaced spans of the split's own (all of them at most; the
    same for every seed, the clips being fixed), as many of each clip (`sizes` even)."""
    clips = cmu_clips(cache_dir)
    for split in SPLITS:
        spans = motion_spans(clips, split)
        count = min(sizes.of(split), len(spans))
        write_split(folder, split, [spans[i] for i in np.linspace(0, len(spans) - 1, count).round().astype(int)])


def main() -> int:
    try:
        print(f"CMU motion clips: {cmu_clips()}")
    except PackageUnavailable as err:
        print(f"CMU motion clips unavailable ({err}); the motion tests will be skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
