"""The generated docs blocks (docs/tasks/<family>.md and docs/cli.md) match the code, and every built-in task
belongs to a documented family."""
import pathlib

import pytest

from ofasys_fs.reference_docs import DOCS_DIR, FAMILIES, builtin_tasks, generated_blocks, render


@pytest.mark.parametrize("path", sorted(generated_blocks()), ids=lambda p: pathlib.Path(p).name)
def test_generated_block_is_up_to_date(path):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    stale = f"{path} is stale: run `python -m ofasys_fs.reference_docs`"
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
    from ofasys_fs.reference_docs import cli_parsers

    page = (pathlib.Path(DOCS_DIR) / "cli.md").read_text(encoding="utf-8")
    for parser in cli_parsers().values():
        assert f"## `{parser.prog}`" in page
        for action in parser._actions:
            for flag in action.option_strings:
                assert f"`{flag}`" in page, (parser.prog, flag)


def test_render_needs_the_markers():
    with pytest.raises(ValueError, match="must contain the lines"):
        render("# no markers\n", "block")
