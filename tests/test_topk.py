"""generators/topk.py: the blocked top-k gives torch.topk's entries on the shapes beam search hands it."""
import pytest
import torch

from ofasys_fs.generators import topk


@pytest.mark.parametrize("shape,k", [((16, 17470), 2), ((4, 5, 17470), 10), ((6, 64 * 40), 4), ((3, 64 * 90 + 37), 3)])
def test_blocked_top_k_gives_torch_topk(shape, k):
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(shape, generator=generator)
    values[0, ..., -1] = 50.0  # the best entry of a row in the partial last block
    values[-1, ..., 64 * 3 + 5] = 40.0  # ... and in a whole block
    values[1, ..., : shape[-1] // 2] = float("-inf")  # half a row banned
    assert shape[-1] >= topk.BLOCK * topk.MIN_BLOCKS_PER_K * k  # the blocked path runs
    expected = values.topk(k, dim=-1)
    got = topk.top_k(values, k)
    assert torch.equal(got[0], expected.values)
    assert torch.equal(got[1], expected.indices)


def test_short_rows_use_torch_topk():
    values = torch.randn(3, 100)
    got = topk.top_k(values, 5)
    assert torch.equal(got[1], values.topk(5, dim=-1).indices)
