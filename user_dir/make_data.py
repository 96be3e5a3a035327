"""Write the example task's data: `python -m user_dir.make_data FOLDER` -> FOLDER/train.jsonl, valid.jsonl, test.jsonl."""
import json
import pathlib
import sys

from .task import make_rows

SPLIT_ROWS = {"train": 48, "valid": 8, "test": 8}


def write_splits(folder: str) -> None:
    """Each split's rows (their own seeds) as JSON lines in `folder`."""
    root = pathlib.Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for seed, (split, count) in enumerate(SPLIT_ROWS.items()):
        rows = make_rows(count, seed=seed)
        (root / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    write_splits(sys.argv[1])
