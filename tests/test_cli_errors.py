"""How every command ends (docs/cli.md, "Exit codes"): an error the user can fix is one line and exit 1, a bug in
the code shows its traceback and exits 3, and --debug / OFASYS_FS_DEBUG=1 show every traceback."""
import pytest

from ofasys_fs.cli import generate, preprocess, train
from ofasys_fs.cli.command import EXIT_INTERNAL, EXIT_USER_ERROR
from ofasys_fs.inference.predictor import Predictor


def generate_args(trained_checkpoint, *extra):
    return ["--path", trained_checkpoint.path, "--data", trained_checkpoint.data_file("topic"), *extra]


def error_lines(err: str, prog: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"{prog}: ")]


def test_a_user_error_is_one_line_in_every_command(trained_checkpoint, tmp_path, capsys):
    assert generate.main(generate_args(trained_checkpoint, "--task", "vqa")) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("ofasys-generate: error: no task 'vqa'") and err.count("\n") == 1
    assert train.main(["--instruction", "[TEXT:a] -> [TEXT:b]", "--data", str(tmp_path / "none.jsonl"),
                       "--save-dir", str(tmp_path / "ckpt")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert error_lines(err, "ofasys-train") == [err.strip()] and "none.jsonl" in err and "Traceback" not in err
    assert preprocess.main(["--input", str(tmp_path / "none.jsonl"), "--destdir", str(tmp_path / "shards")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ofasys-preprocess: error: --input") and err.count("\n") == 1


def test_an_instruction_error_is_one_line_naming_the_character(trained_checkpoint, capsys):
    assert generate.main(generate_args(trained_checkpoint, "--instruction", "[TEXT:sentence] -> [TEXTT:x]")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown modality 'TEXTT'" in err and "at character 20 of the instruction" in err


def test_a_bug_shows_its_traceback_and_exit_code_3(trained_checkpoint, monkeypatch, capsys):
    def broken(self, sample, options):
        return [][0]  # an internal bug: an IndexError deep inside

    monkeypatch.setattr(Predictor, "decode", broken)
    assert generate.main(generate_args(trained_checkpoint, "--task", "topic")) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "IndexError: list index out of range" in err
    assert 'in broken' in err and err.strip().splitlines()[-1].startswith("ofasys-generate: internal error:")


@pytest.mark.parametrize("switch", ["flag", "environment"])
def test_debug_shows_the_traceback_of_a_user_error(trained_checkpoint, monkeypatch, capsys, switch):
    extra = ["--debug"] if switch == "flag" else []
    if switch == "environment":
        monkeypatch.setenv("OFASYS_FS_DEBUG", "1")
    assert generate.main(generate_args(trained_checkpoint, "--task", "vqa", *extra)) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError: no task 'vqa'" in err
    assert err.strip().splitlines()[-1].startswith("ofasys-generate: error: no task 'vqa'")
