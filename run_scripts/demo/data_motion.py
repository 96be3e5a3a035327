"""Real motion capture: CMU clips (BVH) that Debian's package `assimp-testmodels` ships in
/usr/share/assimp/models/BVH (CMU's terms: free for research and commercial use, stated in the package's
01_nn.bvh.source.txt). Installed, or fetched once into the cache folder (debian_package.py).

    python -m run_scripts.demo.data_motion     # `make test` runs it first; says where the clips are
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from .debian_package import DEFAULT_CACHE, PackageUnavailable, find_package_files, package_files

PACKAGE = "assimp-testmodels"
FOLDER = "usr/share/assimp/models/BVH"
# CMU subject 01 (one skeleton of 31 joints, 120 fps) with CMU's descriptions; Boxing_Toes has another skeleton
DESCRIPTIONS = {"01_01.bvh": "playground - forward jumps, turn around", "01_03.bvh": "climb, hang, swing"}
CLIPS = (*DESCRIPTIONS, "Boxing_Toes.bvh")


def cmu_clips(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The folder holding CLIPS: the installed package's, else unpacked into `cache_dir` on first use."""
    return package_files(PACKAGE, FOLDER, cache_dir, CLIPS)


def installed_cmu_clips(cache_dir: Path = DEFAULT_CACHE) -> Optional[Path]:
    """The folder holding CLIPS when installed or already cached (nothing is fetched), else None."""
    return find_package_files(PACKAGE, FOLDER, cache_dir, CLIPS)


def main() -> int:
    try:
        print(f"CMU motion clips: {cmu_clips()}")
    except PackageUnavailable as err:
        print(f"CMU motion clips unavailable ({err}); the motion tests will be skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
