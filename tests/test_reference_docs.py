"""The generated docs blocks (docs/tasks/<family>.md, docs/cli.md and docs/config.md) match the code, the
command the docs print to regenerate them works, and every built-in task belongs to a documented family."""
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tools/ is not installed with the package

from tools.config_reference import config_reference_markdown  # noqa: E402
from tools.render_docs import COMMAND, DOCS_DIR, generated_blocks, render  # noqa: E402
from tools.task_reference import FAMILIES, builtin_tasks  # noqa: E402


@pytest.mark.parametrize("path", sorted(generated_blocks()), ids=lambda p: pathlib.Path(p).name)
def test_generated_block_is_up_to_date(path):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    stale = f"{path} is stale: run `{COMMAND}`"
    assert render(text, generated_blocks()[path]()) == text, stale


def test_every_builtin_task_has_a_family_page():
    families = {name: cls.family for name, cls in builtin_tasks().items()}
    assert {name: family for name, family in families.items() if family not in FAMILIES} == {}
    assert set(families.values()) == set(FAMILIES)
    for family in FAMILIES:
        page = (pathlib.Path(DOCS_DIR) / "tasks" / f"{family}.md").read_text(encoding="utf-8")
        for name, task_family in families.items():
            assert (f"### `{name}`" in page) == (task_family == family)


def test_cli_reference_lists_every_flag_of_every_command():
    from tools.cli_reference import cli_parsers

    page = (pathlib.Path(DOCS_DIR) / "cli.md").read_text(encoding="utf-8")
    for parser in cli_parsers().values():
        assert f"## `{parser.prog}`" in page
        for action in parser._actions:
            for flag in action.option_strings:
                assert f"`{flag}`" in page, (parser.prog, flag)


def test_render_needs_the_markers():
    with pytest.raises(ValueError, match="must contain the lines"):
        render("# no markers\n", "block")


def test_reference_lists_every_option_with_its_flag():
    reference = config_reference_markdown()
    for line in ("| `optimization.lr` | `--lr` | float | `0.001` |", "| `model.arch` | `-a`, `--arch` |",
                 "| `tasks.N.weight` | (YAML, overrides) | float | `1.0` |"):
        assert line in reference, line
    assert "`--keep-last-n`, `--keep-interval-updates`" in reference
    assert "str \\| list[str] \\| None" in reference  # pipes escaped inside table cells


def test_the_printed_command_rewrites_a_stale_block(tmp_path):
    """The command the docs print, run as printed (from the root of a copy of tools/ and docs/): it rewrites
    the stale block of the copy, names that file, and leaves every page equal to the repository's."""
    root = tmp_path.resolve()  # as the command sees its working directory
    shutil.copytree(REPO / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "docs", root / "docs")
    stale = root / "docs" / "cli.md"
    stale.write_text(render(stale.read_text(encoding="utf-8"), "stale\n"), encoding="utf-8")
    program, *arguments = COMMAND.split()
    assert program == "python"
    done = subprocess.run([sys.executable, *arguments], cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"updated {stale}"]
    for path in generated_blocks():
        copy = root / pathlib.Path(path).relative_to(REPO)
        assert copy.read_text(encoding="utf-8") == pathlib.Path(path).read_text(encoding="utf-8"), path
