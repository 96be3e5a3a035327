"""Disk full (docs/reliability.md, guarantee 3): a checkpoint write that fails with ENOSPC halfway (simulated in
torch.save, or in the copy to the other checkpoint names) stops ofasys-train with one line saying the disk is
full, leaves every earlier checkpoint byte for byte as it was and no temporary file; once there is space again,
the same command resumes to the parameters of the uninterrupted reference run."""
import errno
import io
import itertools
import os
import shutil

import pytest
import torch
from test_distributed import assert_all_checkpoints_load, assert_same_weights

from ofasys_fs.cli.train import main as train_main


def snapshot(save_dir) -> dict:
    return {path.name: path.read_bytes() for path in save_dir.glob("*.pt")}


def failing_halfway(write, failing_call: int, save_dir, seen: dict):
    """`write(source, target)` that, on its `failing_call`-th use for a file on disk, writes half the bytes and
    raises ENOSPC; `seen` gets the checkpoints on disk at that moment."""
    calls = itertools.count(1)

    def wrapper(source, target, *args, **kwargs):
        if not isinstance(target, io.BufferedWriter) or next(calls) != failing_call:
            return write(source, target, *args, **kwargs)
        buffer = io.BytesIO()
        write(source, buffer, *args, **kwargs)
        target.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        target.flush()
        seen.update(snapshot(save_dir))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return wrapper


@pytest.mark.parametrize("where", ["torch.save", "copy to the other names"])
def test_a_full_disk_stops_training_cleanly_and_keeps_the_previous_checkpoints(micro, reference, tmp_path, where,
                                                                              monkeypatch, capsys):
    save_dir, seen = tmp_path / "run", {}
    if where == "torch.save":  # the second checkpoint event, at update 6
        monkeypatch.setattr(torch, "save", failing_halfway(torch.save, 2, save_dir, seen))
    else:  # update 3 copies checkpoint_last.pt to checkpoint_3.pt; update 6 to checkpoint_best.pt first
        monkeypatch.setattr(shutil, "copyfileobj", failing_halfway(shutil.copyfileobj, 2, save_dir, seen))
    assert train_main(micro.argv(save_dir)) == 1
    message = capsys.readouterr().err
    assert message.startswith(f"ofasys-train: error: could not write {save_dir}/checkpoint_")
    assert message.count("\n") == 1
    assert "the disk is full; the previous file there (if any) is unchanged" in message
    assert seen and snapshot(save_dir) == seen  # nothing on disk changed after the failed write
    assert not list(save_dir.glob("*.tmp"))
    assert_all_checkpoints_load(save_dir)

    monkeypatch.undo()  # space again
    assert train_main(micro.argv(save_dir)) == 0
    assert_same_weights(save_dir / "checkpoint_last.pt", reference, atol=1e-6)
