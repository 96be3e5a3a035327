"""Grounding's initialisation (docs/model.md, "Bins and patches share a coordinate code"): a fresh model's
`<bin>` embeddings and image grid position vectors encode coordinates alike, so each patch column (row)
starts out closest to the bin at its centre, and neighbouring bins start out similar."""
import torch

from ofasys_fs import GeneralistModel
from ofasys_fs.vocab import Vocabulary, VocabConfig


def test_bins_and_patch_positions_start_with_one_coordinate_code():
    vocab = Vocabulary.from_config(VocabConfig(num_bins=64, num_codes=0))
    model = GeneralistModel(arch="micro", image_size=64).build(vocab, ["text", "image_patch"])
    bins = vocab.range("bin")
    table = model.embed_tokens.weight.detach()[bins.start:bins.stop]
    half = table.size(1) // 2
    positions = model.encoder.adaptors["image_patch"].positions
    grid = positions.max_grid
    centres = ((torch.arange(grid) + 0.5) / grid * (len(bins) - 1)).round().long()
    columns, rows = positions.col_positions.weight.detach(), positions.row_positions.weight.detach()
    assert torch.equal((columns[:, :half] @ table[:, :half].T).argmax(1), centres)
    assert torch.equal((rows[:, half:] @ table[:, half:].T).argmax(1), centres)
    similarity = torch.nn.functional.normalize(table, dim=1) @ torch.nn.functional.normalize(table, dim=1).T
    assert bool((similarity[10, 9] > similarity[10, 30]) & (similarity[10, 11] > similarity[10, 50]))
