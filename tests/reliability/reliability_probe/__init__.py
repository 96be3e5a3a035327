"""Test plugin of the reliability and distributed tests, loaded with --user-dir like any plugin (the toolkit has
no test hooks).

- criterion `probe_ce`: label_smoothed_ce that, before a batch, appends a digest of the parameters it trains to
  $PROBE_DIGESTS/rank<RANK>.txt and sleeps $PROBE_STEP_SECONDS, and creates the file
  $PROBE_PROGRESS/rank<RANK>_batch_<n> after its n-th batch (so a test can kill a run at a chosen point); a
  batch holding a row with "poison": "nan" gets a NaN loss, one with "poison": "grad" a finite loss whose
  gradients are infinite;
- with $PROBE_SLOW_SAVE set (a folder), the n-th torch.save into a file writes half the bytes, creates
  $PROBE_SLOW_SAVE/save_<n>, sleeps $PROBE_SLOW_SAVE_SECONDS (default 0.3) and writes the rest: a window in
  which a test kills the run in the middle of a checkpoint write.
"""
import hashlib
import io
import itertools
import math
import os
import time

import torch

from ofasys_fs import register_criterion
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig

BATCHES = itertools.count(1)  # batches this process computed a loss for
SAVES = itertools.count(1)  # torch.save calls into files


@register_criterion("probe_ce", dataclass=LabelSmoothedCEConfig)
class ProbeCE(LabelSmoothedCE):
    """label_smoothed_ce + parameter digests, slow steps, a progress file per batch and poisoned rows (see the
    module docstring)."""

    def forward(self, model, sample):
        rank = os.environ.get("RANK", "0")
        if os.environ.get("PROBE_DIGESTS"):
            append_digest(model, os.path.join(os.environ["PROBE_DIGESTS"], f"rank{rank}.txt"))
        if os.environ.get("PROBE_STEP_SECONDS"):
            time.sleep(float(os.environ["PROBE_STEP_SECONDS"]))
        loss, size, log = super().forward(model, sample)
        batch = next(BATCHES)
        if os.environ.get("PROBE_PROGRESS"):
            touch(os.path.join(os.environ["PROBE_PROGRESS"], f"rank{rank}_batch_{batch}"))
        poisons = {row.get("poison") for row in sample["rows"]}
        if "nan" in poisons:
            return loss * math.nan, size, {**log, "loss": math.nan}
        if "grad" in poisons:
            return InfiniteGradient.apply(loss), size, log
        return loss, size, log


class InfiniteGradient(torch.autograd.Function):
    """Identity forward; the backward pass sends infinite gradients."""

    @staticmethod
    def forward(ctx, loss):
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


def append_digest(model: torch.nn.Module, path: str) -> None:
    """Append a SHA-256 of all of the model's parameters to the text file `path`, one line per call."""
    digest = hashlib.sha256()
    for parameter in model.parameters():
        digest.update(parameter.detach().cpu().numpy().tobytes())
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(digest.hexdigest() + "\n")


def touch(path: str) -> None:
    open(path, "w", encoding="utf-8").close()


def slow_save(obj, file, *args, **kwargs):
    """torch.save that pauses halfway through writing a file on disk (saves into memory pass through)."""
    if not isinstance(file, io.BufferedWriter):
        return real_save(obj, file, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    file.write(data[:len(data) // 2])
    file.flush()
    touch(os.path.join(os.environ["PROBE_SLOW_SAVE"], f"save_{next(SAVES)}"))
    time.sleep(float(os.environ.get("PROBE_SLOW_SAVE_SECONDS", "0.3")))
    file.write(data[len(data) // 2:])
    return None


if os.environ.get("PROBE_SLOW_SAVE"):
    real_save, torch.save = torch.save, slow_save
