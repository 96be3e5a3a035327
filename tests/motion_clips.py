"""Real motion capture for the motion tests: the CMU clips of Debian's assimp-testmodels (installed, or cached by
`make test`'s first step, run_scripts/demo/data_motion.py). Without them the tests that need them are skipped."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run_scripts/ is not installed with the package

from run_scripts.demo.data_motion import installed_cmu_clips  # noqa: E402

CLIPS_DIR = installed_cmu_clips()
MISSING = ("the CMU motion clips of Debian's assimp-testmodels are missing: `apt-get install assimp-testmodels`, "
           "or `python -m run_scripts.demo.data_motion` (what `make test` runs first) to fetch them into the cache")
needs_clips = pytest.mark.skipif(CLIPS_DIR is None, reason=MISSING)
JUMPS, CLIMB, BOXING = "01_01.bvh", "01_03.bvh", "Boxing_Toes.bvh"


def clip(name: str) -> str:
    return str(CLIPS_DIR / name)
