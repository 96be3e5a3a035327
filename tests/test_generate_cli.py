"""ofasys-generate, ofasys-validate and ofasys-interactive, called in-process on the session's trained
micro checkpoint (tests/conftest.py)."""
import io
import json

import pytest

from ofasys_fs import OFASys
from ofasys_fs.cli import generate, interactive, validate


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_generate_writes_every_row_once_in_order_with_the_hub_outputs(trained_checkpoint, tmp_path, capsys):
    ckpt = trained_checkpoint
    out = tmp_path / "results" / "caption.jsonl"
    code = generate.main(["--path", ckpt.path, "--task", "caption", "--data", ckpt.data_dir + "/caption",
                          "--results-path", str(out), "--batch-size", "5"])
    lines = read_lines(out)
    rows = ckpt.rows["caption"]
    assert code == 0 and [line["id"] for line in lines] == list(range(len(rows)))
    hub = OFASys.from_pretrained(ckpt.path, device="cpu").inference(ckpt.instructions["caption"], rows, batch_size=5)
    assert [(line["text"], line["tokens"]) for line in lines] == [(o.text, o.tokens) for o in hub]
    assert [line["score"] for line in lines] == pytest.approx([o.score for o in hub], abs=1e-5)
    summary = capsys.readouterr().out
    assert "caption | test | 12 rows | cider" in summary  # references in the rows: scored


def test_generate_to_stdout_with_flags_an_instruction_and_another_metric(trained_checkpoint, tmp_path, capsys):
    ckpt = trained_checkpoint
    code = generate.main(["--path", ckpt.path, "--instruction", ckpt.instructions["grounding"],
                          "--data", ckpt.data_file("grounding", "valid"), "--beam", "1", "--scoring", "acc_iou"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 0 and len(lines) == len(ckpt.rows["grounding"])
    assert all(len(line["box"]) == 4 and "text" not in line for line in lines)
    assert "acc_iou 1.0000" in captured.err  # results on stdout, so the summary goes to stderr


def test_generate_results_folder_and_rows_without_references(trained_checkpoint, tmp_path, capsys):
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"sentence": s}) + "\n" for s in ("i like the dog one", "i like the two one")))
    folder = tmp_path / "out"
    folder.mkdir()
    code = generate.main(["--path", trained_checkpoint.path, "--task", "topic", "--data", str(tmp_path),
                          "--results-path", str(folder)])
    assert code == 0 and [line["text"] for line in read_lines(folder / "generate-test.jsonl")] == ["animal", "number"]
    assert "not scored: no row has references in column 'topic'" in capsys.readouterr().out


def test_generate_rows_carry_source_and_reference_and_an_unscored_run_says_how_to_score(trained_checkpoint, tmp_path,
                                                                                        capsys):
    ckpt = trained_checkpoint
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps({"sentence": "i like the cat one", "topic": "animal"}) + "\n")
    paraphrase = "[TEXT:sentence] which topic is it? -> [TEXT:topic]"  # no trained task: generic defaults
    with pytest.warns(UserWarning, match=r"matches no task .* nearest trained instruction is '\[TEXT:sentence\] what "
                                         r"is the topic\?.*\(task 'topic'\)"):
        code = generate.main(["--path", ckpt.path, "--instruction", paraphrase, "--data", str(data),
                              "--results-path", str(tmp_path / "out")])
    (line,) = read_lines(tmp_path / "out" / "generate-test.jsonl")  # a --results-path without .jsonl is a folder
    assert code == 0 and line["source"] == {"sentence": "i like the cat one"} and line["reference"] == "animal"
    assert "not scored: task 'inference' has no metric; pass --scoring METRIC" in capsys.readouterr().out


def test_generate_reports_user_errors_in_one_line(trained_checkpoint, capsys):
    ckpt = trained_checkpoint
    both = ["--path", ckpt.path, "--task", "topic", "--instruction", ckpt.instructions["topic"],
            "--data", ckpt.data_dir]
    assert generate.main(both) == 1
    assert "exactly one of them" in capsys.readouterr().err
    assert generate.main(["--path", ckpt.path, "--task", "vqa", "--data", ckpt.data_dir]) == 1
    assert "no task 'vqa'" in capsys.readouterr().err
    assert generate.main(["--path", ckpt.path, "--task", "topic", "--data", ckpt.data_dir, "--beam", "0"]) == 1
    assert "flag --beam: beam=0: must be >= 1" in capsys.readouterr().err  # checked before the checkpoint is even read


def test_validate_prints_the_loss_and_the_metric(trained_checkpoint, capsys):
    ckpt = trained_checkpoint
    code = validate.main(["--path", ckpt.path, "--task", "topic", "--data", ckpt.data_dir + "/topic",
                          "--max-valid-samples", "6"])
    line = capsys.readouterr().out.strip()
    fields = dict(part.rsplit(" ", 1) for part in line.split(" | ")[1:])
    assert code == 0 and line.startswith("valid on 'topic' subset 'valid'")
    assert float(fields["loss"]) < 0.1 and float(fields["accuracy"]) == 1.0 and float(fields["token_accuracy"]) == 1.0


def test_interactive_answers_every_line_in_order(trained_checkpoint):
    stdin = io.StringIO('{"sentence": "i like the cat one"}\nnot json\n\n{"sentence": "i like the red one"}\n[1]\n')
    stdout = io.StringIO()
    code = interactive.main(["--path", trained_checkpoint.path, "--beam", "2",
                             "--instruction", trained_checkpoint.instructions["topic"]], stdin=stdin, stdout=stdout)
    replies = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert code == 1  # some lines failed
    assert [reply.get("text") for reply in replies] == ["animal", None, "colour", None]
    assert replies[1]["error"].startswith("line 2:") and "JSON object" in replies[3]["error"]
