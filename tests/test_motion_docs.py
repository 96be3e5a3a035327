"""docs/motion.md as printed: its Python blocks run in order, then its ofasys-train and ofasys-generate commands
(in-process main(argv)). Where the clips are not installed but cached, the CLIPS folder line points there."""
import json
import pathlib
import shlex

from motion_clips import CLIPS_DIR, needs_clips

from ofasys_fs.cli import generate, train

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "motion.md"
INSTALLED = 'CLIPS = "/usr/share/assimp/models/BVH"'


def blocks(kind: str) -> list[str]:
    """The page's fenced blocks whose info string is `kind` ("" for plain ones), in order."""
    found, current, info = [], None, ""
    for line in PAGE.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == kind:
                    found.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return found


@needs_clips
def test_the_motion_page_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in blocks("python"):
        assert INSTALLED in code or "CLIPS" not in code
        exec(compile(code.replace(INSTALLED, f'CLIPS = "{CLIPS_DIR}"'), str(PAGE), "exec"), namespace)
    assert capsys.readouterr().out.split()[:2] == ["2752", "(60,"]
    assert (tmp_path / "jump.bvh").stat().st_size > 0 and (tmp_path / "jump.gif").stat().st_size > 0
    assert namespace["metric"].higher_is_better
    commands = [line for block in blocks("") for line in block.splitlines() if line.startswith("ofasys-")]
    assert [c.split()[0] for c in commands] == ["ofasys-train", "ofasys-generate"]
    mains = {"ofasys-train": train.main, "ofasys-generate": generate.main}
    for command in commands:
        argv = shlex.split(command)
        assert mains[argv[0]](argv[1:]) == 0, command
    outputs = [json.loads(line) for line in (tmp_path / "motion_test.jsonl").read_text().splitlines()]
    test_rows = (tmp_path / "motion_rows" / "test.jsonl").read_text().splitlines()
    assert len(outputs) == len(test_rows) and all(isinstance(output["text"], str) for output in outputs)
