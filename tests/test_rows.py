"""RowSource over every input form, with clear errors for bad files."""
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ofasys_fs.data.rows import as_row_source
from ofasys_fs.data.shards import ShardWriter
from ofasys_fs.errors import DataError
from ofasys_fs.tasks.base import Task

ROWS = [{"src": "a b", "tgt": "b a", "n": 1}, {"src": "ç d", "tgt": "d ç", "n": 2}, {"src": "e", "tgt": "e", "n": 3}]


def write_jsonl(path, rows, blank_lines=False):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    text = ("\n\n" if blank_lines else "\n").join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def test_list_jsonl_tsv_parquet_shard_and_torch_dataset_agree(tmp_path):
    jsonl = write_jsonl(tmp_path / "train.jsonl", ROWS, blank_lines=True)
    tsv = tmp_path / "rows.tsv"
    tsv.write_text("src\ttgt\tn\n" + "".join(f"{r['src']}\t{r['tgt']}\t{r['n']}\n" for r in ROWS), encoding="utf-8")
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet, row_group_size=2)
    shard = tmp_path / "shard"
    with ShardWriter(str(shard), "train") as writer:
        for row in ROWS:
            writer.add_row(row)
        writer.finalize()

    class TorchRows(torch.utils.data.Dataset):
        def __len__(self):
            return len(ROWS)

        def __getitem__(self, i):
            return ROWS[i]

    for source in (ROWS, str(jsonl), str(parquet), str(shard), TorchRows(), str(tmp_path)):
        rows = as_row_source(source, "train")
        assert [rows[i] for i in range(len(rows))] == ROWS, source
    tsv_rows = as_row_source(str(tsv))
    assert [tsv_rows[i] for i in range(3)] == [{k: str(v) for k, v in r.items()} for r in ROWS]
    assert as_row_source(str(jsonl)).base_dir == str(tmp_path)


def test_jsonl_is_indexed_not_loaded(tmp_path):
    rows = as_row_source(str(write_jsonl(tmp_path / "a.jsonl", ROWS)))
    assert list(rows.offsets) == [0, len(json.dumps(ROWS[0], ensure_ascii=False).encode()) + 1,
                                  sum(len(json.dumps(r, ensure_ascii=False).encode()) + 1 for r in ROWS[:2])]
    assert not hasattr(rows, "rows") and not hasattr(rows, "data")


@pytest.mark.parametrize("content, message", [
    (b"", "has no rows"),
    (b'{"a": 1}\n{"a": \n', "line 2 (row 1): not valid JSON"),
    (b'{"a": 1}\n[1, 2]\n', "line 2 (row 1): expected a JSON object"),
    (b'{"a": 1}\n{"a": "\xff\xfe"}\n', "line 2 (row 1): not valid UTF-8"),
])
def test_bad_jsonl(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)) as err:
        rows = as_row_source(str(path))
        for i in range(len(rows)):
            rows[i]
    assert str(path) in str(err.value)


def test_bad_tsv_and_unsupported_sources(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("a\tb\n1\t2\n3\n", encoding="utf-8")
    rows = as_row_source(str(path))
    with pytest.raises(DataError, match=r"line 3 \(row 1\): 1 tab-separated fields, expected 2"):
        rows[1]
    with pytest.raises(DataError, match="unsupported data file"):
        (tmp_path / "x.csv").write_text("a,b\n")
        as_row_source(str(tmp_path / "x.csv"))
    with pytest.raises(DataError, match="no such file"):
        as_row_source(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="neither a shard"):
        (tmp_path / "empty_dir").mkdir()
        as_row_source(str(tmp_path / "empty_dir"))
    with pytest.raises(DataError, match="iterable-only"):
        as_row_source(iter(ROWS))
    with pytest.raises(DataError, match="expected a dict of columns"):
        as_row_source([1, 2])[0]


def test_task_add_dataset_and_closed_set_answers():
    task = Task(instruction="[TEXT:src] -> [TEXT:tgt,closed_set]").add_dataset(ROWS + ROWS[:1], "train")
    assert task.name == "tgt" and task.references == "tgt"
    assert task.closed_set_answers() == ["b a", "d ç", "e"]
    with pytest.raises(ValueError, match="split must be one of"):
        task.add_dataset(ROWS, "dev")
    with pytest.raises(ValueError, match="give an instruction"):
        Task(name="nothing")
