"""The example plugin end to end: train its reverse_words task (text_conv adaptor, focal_ce criterion) with
--user-dir, then decode with its plugin_greedy generator through OFASys.from_pretrained in a fresh Python
process (nothing imported but ofasys_fs) and through ofasys-generate."""
import json
import os
import subprocess
import sys

import pytest

from documented import blocks, commands, run
from ofasys_fs.cli import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(REPO, "user_dir")
TRAIN_ROWS = 48
# measured: exact match 1.0 on the training rows after 200 updates; 0 for an untrained model (user_dir/README.md)
EXACT_MATCH_FLOOR = 0.5

FRESH_PROCESS = """
import json, sys, warnings
from ofasys_fs import OFASys
from ofasys_fs.errors import PluginError
with warnings.catch_warnings(record=True) as caught:  # the recorded plugin is named, never imported on its own
    warnings.simplefilter("always")
    try:
        OFASys.from_pretrained(sys.argv[1], device="cpu")
        raise AssertionError("loaded a plugin model without its plugin")
    except PluginError as err:
        assert 'unknown adaptor "text_conv"' in str(err) and "--user-dir" in str(err), err
assert "user_dir" not in sys.modules and any("pass user_dir=" in str(w.message) for w in caught), caught
model = OFASys.from_pretrained(sys.argv[1], device="cpu", user_dir=sys.argv[3])
rows = [json.loads(line) for line in open(sys.argv[2])]
outputs = model.inference(model.task("reverse_words").instruction.text, rows)
print(json.dumps({"plugin_imported": "user_dir" in sys.modules, "generator": model.task("reverse_words").generation,
                  "outputs": [output.to_dict() for output in outputs]}))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The model user_dir/README.md trains, by running its commands as printed (in a folder holding a link to the
    plugin); the tests decode its training rows, made by the same command."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "user_dir").symlink_to(USER_DIR)
    make_data, train_command, generate_command = commands("user_dir/README.md")
    assert run(make_data, root) == 0 and run(train_command, root) == 0 and run(generate_command, root) == 0
    data = root / "reverse_data" / "train.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == TRAIN_ROWS and (root / "reverse_out" / "generate-test.jsonl").is_file()
    return {"path": str(root / "reverse_ckpt" / "checkpoint_last.pt"), "rows": rows, "data": str(data)}


def test_the_yaml_form_of_docs_plugins_resolves_the_plugin_task_and_adaptor(tmp_path, capsys):
    (tmp_path / "user_dir").symlink_to(USER_DIR)
    (yaml_text,) = blocks("docs/plugins.md", "yaml")
    (tmp_path / "reverse.yaml").write_text(yaml_text)
    assert [run(command, tmp_path) for command in commands("docs/plugins.md")] == [0, 0]
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("done: 20 updates")
    assert (tmp_path / "reverse_yaml_ckpt" / "checkpoint_best.pt").is_file()


def exact_match(texts: list, rows: list) -> float:
    return sum(text == row["tgt"] for text, row in zip(texts, rows)) / len(rows)


def test_from_pretrained_in_a_fresh_process_decodes_with_the_plugin_generator(trained):
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, trained["path"], trained["data"], USER_DIR], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout.splitlines()[-1])
    assert reply["plugin_imported"] and reply["generator"]["generator"] == "plugin_greedy"
    outputs = reply["outputs"]
    assert len(outputs) == TRAIN_ROWS
    assert all(isinstance(o["text"], str) and o["tokens"] and len(o["positional_scores"]) >= len(o["tokens"])
               for o in outputs)
    assert exact_match([o["text"] for o in outputs], trained["rows"]) >= EXACT_MATCH_FLOOR


def test_ofasys_generate_decodes_the_plugin_task_and_scores_it(trained, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code = generate.main(["--path", trained["path"], "--task", "reverse_words", "--data", trained["data"],
                          "--results-path", str(out), "--user-dir", USER_DIR])
    lines = [json.loads(line) for line in open(out, encoding="utf-8")]
    assert code == 0 and [line["id"] for line in lines] == list(range(TRAIN_ROWS))
    assert exact_match([line["text"] for line in lines], trained["rows"]) >= EXACT_MATCH_FLOOR
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(f"reverse_words | test | {TRAIN_ROWS} rows | exact_match ")
    assert float(summary.rsplit(" ", 1)[1]) >= EXACT_MATCH_FLOOR
