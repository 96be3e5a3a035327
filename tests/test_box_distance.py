"""The distance-aware term on `<bin>` targets (criteria/box_distance.py): its value, that its gradient points to
the target where cross-entropy's does not, the bin ids collation hands it, and its place in the criterion."""
import pytest
import torch
import torch.nn.functional as F

from ofasys_fs.criteria.box_distance import box_distance
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.tasks.base import Task
from test_box_attention import WHERE, square_rows
from test_collate import batch, ctx, vocab  # noqa: F401 (a fixture)
from test_trainer import options, tokenizer  # noqa: F401 (a fixture)

BINS = range(10, 15)  # five bins: coordinates 0, 0.25, 0.5, 0.75, 1


def test_it_is_the_expected_distance_between_a_bins_coordinate_and_the_targets():
    logits = torch.zeros(3, 20)
    logits[0, 12] = 60.0  # all the mass on the target's bin
    logits[1, [10, 14]] = 60.0  # half on coordinate 0, half on 1; the target at 0.25
    logits[2, 3] = 60.0  # not a bin target: no term, wherever the mass is
    target = torch.tensor([12, 11, 3])
    assert torch.allclose(box_distance(logits, target, BINS), torch.tensor([0.0, 0.5, 0.0]), atol=1e-6)
    assert torch.equal(box_distance(logits, torch.tensor([1, 2, 3]), BINS), torch.zeros(3))


def test_its_gradient_favours_the_bins_near_the_target_where_cross_entropys_does_not():
    logits = torch.zeros(1, 20, requires_grad=True)  # uniform: every bin as likely
    target = torch.tensor([10])  # coordinate 0
    box_distance(logits, target, BINS).sum().backward()
    near_to_far = logits.grad[0, BINS.start:BINS.stop]
    assert (near_to_far.diff() > 0).all()  # a descent step raises the near bins most, the far ones least
    logits.grad = None
    F.cross_entropy(logits, target).backward()
    wrong = logits.grad[0, BINS.start + 1:BINS.stop]
    assert torch.allclose(wrong, wrong[0].expand_as(wrong))  # one bin off or four: the same push


def test_collation_names_the_bin_ids_with_the_target_boxes(vocab):  # noqa: F811
    encoder = RowEncoder("t", "[TEXT:a] -> region [BOX:b,size=10,10]", vocab)
    assert batch(encoder, [{"a": "q", "b": "1,2,5,10"}])["box_bins"] == vocab.range("bin")
    assert "box_bins" not in batch(RowEncoder("t", "[TEXT:a] -> [TEXT:b]", vocab), [{"a": "x", "b": "y"}])


@pytest.mark.parametrize("weight", [0.0, 4.0])
def test_the_criterion_adds_the_weighted_distance(tokenizer, tmp_path, weight):  # noqa: F811
    trainer = Trainer(**options(tokenizer, tmp_path, max_update=1, box_distance=weight))
    model = trainer.fit(tasks=[Task(name="where", instruction=WHERE).add_dataset(square_rows(8, 0), "train")])
    assert trainer.criteria["where"].cfg.box_distance == weight
    encoder = trainer.encoders["where"]
    sample = encoder.collate([encoder.encode(row, ctx("valid", i)) for i, row in enumerate(square_rows(4, 1))])
    model.eval()
    plain, _, plain_log = LabelSmoothedCE(LabelSmoothedCEConfig(box_distance=0.0))(model, sample)
    weighted, _, log = LabelSmoothedCE(LabelSmoothedCEConfig(box_distance=3.0))(model, sample)
    assert "box_distance" not in plain_log and 0 < log["box_distance"] < log["ntokens"]  # at most 1 per token
    assert torch.allclose(weighted - plain, torch.tensor(3.0 * log["box_distance"]), rtol=1e-5)
    with pytest.raises(ValueError, match="box_distance"):
        Trainer(**options(tokenizer, tmp_path, box_distance=-1.0))
