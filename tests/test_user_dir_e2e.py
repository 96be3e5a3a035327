"""The example plugin end to end: train its reverse_words task (text_conv adaptor, focal_ce criterion) with
--user-dir, then decode with its plugin_greedy generator through OFASys.from_pretrained in a fresh Python
process (nothing imported but ofasys_fs) and through ofasys-generate."""
import json
import os
import subprocess
import sys

import pytest
import torch

from ofasys_fs import import_user_dir
from ofasys_fs.cli import generate
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.registry import build_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(REPO, "user_dir")
TRAIN_ROWS = 48
# measured: exact match 1.0 on the training rows after 200 updates; 0 for an untrained model
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
    import_user_dir(USER_DIR)
    from user_dir.task import make_rows

    root = tmp_path_factory.mktemp("plugin")
    rows = make_rows(TRAIN_ROWS, seed=0)
    data = root / "test.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = build_task("reverse_words").add_dataset(rows, "train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(arch="micro", dropout=0.0, device="cpu", num_bins=100, num_codes=0, batch_size=16, max_update=200,
                lr=3e-3, warmup_updates=10, save_dir=str(root / "ckpt"), log_interval=1000, seed=1,
                save_interval_updates=100000, user_dir=[USER_DIR]).fit(tasks=[task])
    finally:
        torch.set_num_threads(threads)
    return {"path": str(root / "ckpt" / "checkpoint_last.pt"), "rows": rows, "data": str(data)}


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
