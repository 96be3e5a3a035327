"""DataLoaders over row keys: plugins re-imported in workers, a fixed generator that leaves the global RNG
alone, and a worker's error re-raised as it was raised (one clear line for a bad row)."""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..registry import imported_user_dirs, reimport_user_dirs


def init_worker(user_dirs: list[str], worker_id: int) -> None:
    """DataLoader worker initialiser: plugins registered in the parent exist in the worker too."""
    reimport_user_dirs(user_dirs)


def make_loader(dataset: Dataset, batch_sampler: Any, collate_fn: Callable, num_workers: int, seed: int) -> DataLoader:
    """A DataLoader over key batches; its own generator keeps the global torch RNG (dropout) untouched."""
    return (WorkerErrorsAsRaised if num_workers else DataLoader)(
        dataset, batch_sampler=batch_sampler, collate_fn=collate_fn, num_workers=num_workers,
        worker_init_fn=functools.partial(init_worker, imported_user_dirs()) if num_workers else None,
        generator=torch.Generator().manual_seed(seed),
    )


class WorkerErrorsAsRaised(DataLoader):
    """A DataLoader with workers whose errors read as they were raised (a bad row's one-line DataError): torch
    re-raises a worker's exception with "Caught ... in DataLoader worker process N" and the worker's whole
    traceback as its message."""

    def __iter__(self) -> Iterator:
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as err:
                raised = as_raised_in_worker(err)
                if raised is err:
                    raise
                del iterator  # and its frames in err's traceback: its workers end now, not at some later gc
                raise raised from err.with_traceback(None)  # torch's message holds the worker's traceback
            yield batch


def as_raised_in_worker(err: Exception) -> Exception:
    """The exception a DataLoader worker raised, rebuilt from torch's re-raise; `err` itself when it is none."""
    kind = type(err)
    text = str(err.args[0]) if err.args else ""
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    start = text.rfind(f"\n{name}: ")
    if not text.startswith(f"Caught {kind.__name__} in DataLoader worker process") or start < 0:
        return err
    try:
        return kind(text[start + len(name) + 3:].rstrip("\n"))
    except Exception:  # an exception class that takes other arguments: keep torch's
        return err
