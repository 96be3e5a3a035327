"""The restricted unpicklers: benchmark pickles (RefCOCO's refs(unc).p) and fairseq checkpoints (OFA's .pt files)
load as data, code never runs."""
import argparse
import collections
import io
import os
import pickle
import pickletools

import numpy as np
import omegaconf
import pytest
import torch

from ofasys_fs.data.safe_pickle import UnsafePickleError, load_fairseq_checkpoint, plain, safe_load

# What Python 2's cPickle.dump(refs, f, 2) writes for [{'sent': 'caf\xe9 left', 'ref_id': 7, 'box': [1.5, 2]}]:
# byte strings (SHORT_BINSTRING 'U'), a float (BINFLOAT 'G'), small ints (BININT1 'K'); no globals.
PYTHON2_REFS = (b"\x80\x02]q\x00}q\x01(U\x04sentq\x02U\tcaf\xe9 leftq\x03U\x06ref_idq\x04K\x07U\x03boxq\x05]q\x06"
                b"(G?\xf8\x00\x00\x00\x00\x00\x00K\x02eua.")


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_python2_refs_pickle_loads_with_latin1_strings(tmp_path):
    pickletools.dis(PYTHON2_REFS, out=io.StringIO())  # the fixture itself is a well-formed pickle
    path = tmp_path / "refs(unc).p"
    path.write_bytes(PYTHON2_REFS)
    assert safe_load(path) == [{"sent": "café left", "ref_id": 7, "box": [1.5, 2]}]
    with open(path, "rb") as handle:
        assert safe_load(handle) == safe_load(PYTHON2_REFS)


def test_plain_python3_data_and_sets_load():
    data = {"a": [1, 2.5, None, True], "b": ("x", "y"), "s": {1, 2}, "f": frozenset({"q"})}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        assert safe_load(pickle.dumps(data, protocol=protocol)) == data


def test_a_pickle_that_calls_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps([{"sent": "x"}, RunsACommand(marker)], protocol=2)
    assert b"system" in payload
    with pytest.raises(UnsafePickleError, match=r"asks for (posix|os|nt)\.system; only plain data"):
        safe_load(payload)
    assert not marker.exists()
    assert pickle.loads(payload) == [{"sent": "x"}, 0] and marker.exists()  # the same bytes do run unrestricted


@pytest.mark.parametrize("value", [eval, getattr, object, pickle.Unpickler])
def test_every_other_global_is_refused(value):
    with pytest.raises(UnsafePickleError, match="was not loaded"):
        safe_load(pickle.dumps(value))


def test_a_damaged_pickle_names_the_file(tmp_path):
    path = tmp_path / "refs.p"
    path.write_bytes(PYTHON2_REFS[:30])
    with pytest.raises(pickle.UnpicklingError, match=r"refs\.p: not a readable pickle"):
        safe_load(path)


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_fairseq_checkpoint_loads_as_tensors_and_plain_data(tmp_path, zip_format):
    """What OFA's .pt files hold beside the weights: argparse.Namespace, omegaconf containers, numpy values."""
    weights = collections.OrderedDict(w=torch.randn(3, 2), b=torch.arange(4), h=torch.ones(2).half())
    args = argparse.Namespace(arch="ofa_tiny", patch_image_size=480, cols=[0, 4], nested=argparse.Namespace(a=None))
    cfg = {"model": omegaconf.OmegaConf.create({"dims": [256, 1024], "flags": {"scale_attn": True, "x": 1.5}})}
    path = tmp_path / "ofa.pt"
    torch.save({"model": weights, "args": args, "cfg": cfg, "extra_state": {"best": np.float64(0.25),
                "array": np.arange(3), "blob": b"\xff\x00"}}, path, _use_new_zipfile_serialization=zip_format)
    loaded = plain(load_fairseq_checkpoint(path))
    assert all(torch.equal(loaded["model"][key], value) for key, value in weights.items())
    assert loaded["args"] == {"arch": "ofa_tiny", "patch_image_size": 480, "cols": [0, 4], "nested": {"a": None}}
    assert loaded["cfg"] == {"model": {"dims": [256, 1024], "flags": {"scale_attn": True, "x": 1.5}}}
    assert loaded["extra_state"]["best"] == 0.25 and loaded["extra_state"]["blob"] == b"\xff\x00"
    assert loaded["extra_state"]["array"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_checkpoint_that_calls_os_system_is_refused_and_nothing_runs(tmp_path, zip_format):
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "args": RunsACommand(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafePickleError, match=r"evil\.pt: the pickle asks for (posix|os|nt)\.system; only tensors"):
        load_fairseq_checkpoint(path)
    assert not marker.exists()
