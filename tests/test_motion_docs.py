"""docs/motion.md as printed: its Python blocks, its YAML config (written to the file its first line names) and its
ofasys-train / ofasys-generate commands (in-process main(argv)) run in page order; then the files they wrote read
back (captions, the BVH and GIF of every generated motion, the known frames of every in-betweened one), and
ofasys-generate's errors for a motion output.
Where the clips are not installed but cached, the CLIPS folder line points there."""
import json
import pathlib
import shlex

import numpy as np
from motion_clips import CLIPS_DIR, needs_clips
from PIL import Image

from ofasys_fs.cli import generate, train
from ofasys_fs.motion import load_motion

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "motion.md"
INSTALLED = 'CLIPS = "/usr/share/assimp/models/BVH"'
MAINS = {"ofasys-train": train.main, "ofasys-generate": generate.main}


def blocks() -> list[tuple[str, str]]:
    """The page's fenced blocks as (info string, text), in order."""
    found, current, info = [], None, ""
    for line in PAGE.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                found.append((info, "".join(current)))
                current = None
        elif current is not None:
            current.append(line)
    return found


def centred_window(row: dict):
    """The 24-frame window a test row gives a model (the centred one at 30 fps), anchored as the model sees it."""
    motion = load_motion(row["clip"]).resampled(30)
    start = (motion.num_frames - 24) // 2
    return motion.frames(start, start + 24).anchored(0)


@needs_clips
def test_the_motion_page_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    commands = []
    for info, text in blocks():
        if info == "python":
            assert INSTALLED in text or "CLIPS" not in text
            exec(compile(text.replace(INSTALLED, f'CLIPS = "{CLIPS_DIR}"'), str(PAGE), "exec"), namespace)
        if info == "yaml":
            name = text.splitlines()[0].removeprefix("# ")
            assert name.endswith(".yaml")
            (tmp_path / name).write_text(text)
        for command in (line for line in text.splitlines() if line.startswith("ofasys-")) if info == "" else ():
            argv = shlex.split(command)
            assert MAINS[argv[0]](argv[1:]) == 0, command
            commands.append(argv[0])
    assert commands == ["ofasys-train", "ofasys-generate"] * 2 + ["ofasys-generate"] * 2
    printed = capsys.readouterr().out.split()
    assert printed[:2] == ["2752", "(60,"] and "24 30.0 31" in " ".join(printed)
    assert (tmp_path / "jump.bvh").stat().st_size > 0 and (tmp_path / "jump.gif").stat().st_size > 0
    assert namespace["metric"].higher_is_better
    test_rows = (tmp_path / "motion_rows" / "test.jsonl").read_text().splitlines()
    captions = [json.loads(line) for line in (tmp_path / "motion_test.jsonl").read_text().splitlines()]
    assert len(captions) == len(test_rows) and all(isinstance(output["text"], str) for output in captions)
    generated = [json.loads(line) for line in (tmp_path / "t2m_test" / "generate-test.jsonl").read_text().splitlines()]
    assert [line["id"] for line in generated] == list(range(len(test_rows)))
    training_skeleton = load_motion(f"{CLIPS_DIR}/01_01.bvh").skeleton
    for line in generated:
        bvh, gif = (tmp_path / "t2m_test" / name for name in line["files"])
        assert line["file"] == line["files"][0] and bvh.suffix == ".bvh" and gif.suffix == ".gif"
        motion = load_motion(str(bvh))
        training_skeleton.check_matches(motion.skeleton, str(bvh))
        assert (motion.num_frames, motion.fps, line["fps"], line["seconds"]) == (24, 30.0, 30.0, 0.8)
        with Image.open(gif) as picture:
            assert picture.n_frames == 24
    joint_captions = (tmp_path / "t2m_captions.jsonl").read_text().splitlines()
    assert len(joint_captions) == len(test_rows) and all("text" in json.loads(line) for line in joint_captions)
    for name in ("generated.bvh", "generated.gif", "inbetween.bvh", "keyframes.gif"):
        assert (tmp_path / name).stat().st_size > 0
    inbetweened = [json.loads(line) for line in (tmp_path / "inbetween_test" / "generate-test.jsonl").open()]
    assert [line["id"] for line in inbetweened] == list(range(len(test_rows)))
    known = np.r_[0:6, 18:24]  # known=6 of max_length=24
    for line, row in zip(inbetweened, test_rows):
        motion, given = load_motion(str(tmp_path / "inbetween_test" / line["file"])), centred_window(json.loads(row))
        np.testing.assert_allclose(motion.rotations[known], given.rotations[known], rtol=0, atol=1e-6)
        np.testing.assert_allclose(motion.root_positions[known], given.root_positions[known], rtol=0, atol=1e-6)
    checkpoint = ["--path", "t2m_ckpt/checkpoint_last.pt", "--task", "text_to_motion", "--data", "motion_rows"]
    assert generate.main(checkpoint) == 1  # media need --results-path
    assert generate.main([*checkpoint, "--results-path", "out", "--beam", "5"]) == 1  # not an option of ddim
    errors = capsys.readouterr().err
    assert "generates media (images, speech, motion): give --results-path" in errors
    assert "generation options ['beam'] do not apply to ddim" in errors
