"""Box-guided cross-attention (criteria/box_attention.py): the boxes collation hands the criterion, the image grid
the encoder reports, the penalty's value, and that training with it makes the decoder look inside the box."""
import numpy as np
import pytest
import torch

from ofasys_fs.criteria.box_attention import box_attention_penalty, cell_coverage, edge_boxes
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.models.archs import resolve_config
from ofasys_fs.models.config import ModelConfig
from ofasys_fs.models.generalist import EncoderOut, GeneralistModel
from ofasys_fs.tasks.base import Task
from test_collate import batch, ctx, piece, vocab  # noqa: F401 (a fixture)
from test_trainer import options, tokenizer  # noqa: F401 (a fixture)

WHERE = "[IMAGE:img] where is the square? -> [BOX:box]"
GRID, CELL = 4, 8  # micro: 32 px images in 8 px patches


def test_cell_coverage_is_the_share_of_each_cell_inside_the_box():
    boxes = torch.tensor([[0.0, 0.5, 0.5, 1.0],  # the left half of the bottom half: x is columns, y is rows
                          [0.5, 0.5, 0.5, 0.5]])  # a point: widened to one cell about its centre
    coverage = cell_coverage(boxes, rows=2, cols=4).view(2, 2, 4)
    assert coverage[0].tolist() == [[0, 0, 0, 0], [1, 1, 0, 0]]
    assert torch.allclose(coverage[1], torch.tensor([[0, 0.25, 0.25, 0], [0, 0.25, 0.25, 0]]))


def test_collation_gives_each_bin_target_its_box_in_normalised_coordinates(vocab):  # noqa: F811
    encoder = RowEncoder("t", "[TEXT:a] -> region [BOX:b,size=10,10] of [TEXT:c]", vocab)
    sample = batch(encoder, [{"a": "q", "b": "1,2,5,10", "c": "cat"}, {"a": "q", "b": "0,0,10,10", "c": "a dog"}])
    start = len(piece(vocab, "region"))
    boxes = sample["target_boxes"]
    assert boxes.shape == (*sample["target"].shape, 4)
    first = torch.tensor([0.1, 0.2, 0.5, 1.0])  # bins of 100: round(u * 99) / 99
    assert torch.allclose(boxes[0, start: start + 4], (first * 99).round().div(99).expand(4, 4))
    assert torch.equal(boxes[1, start: start + 4], torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(4, 4))
    outside = torch.ones(boxes.shape[:2], dtype=torch.bool)
    outside[:, start: start + 4] = False
    assert boxes[outside].isnan().all()  # the prompt, the caption, </s> and padding name no box
    assert "target_boxes" not in batch(RowEncoder("t", "[TEXT:a] -> [TEXT:b]", vocab), [{"a": "x", "b": "y"}])


def test_the_penalty_is_the_attention_mass_anywhere_but_inside_the_box():
    encoder_out = EncoderOut(x=torch.zeros(1, 6, 2), padding_mask=torch.zeros(1, 6, dtype=torch.bool),
                             position_embeddings=torch.zeros(1, 6, 2),
                             spans=(("text", 0, 2), ("image_patch", 2, 6)), grids=(None, (2, 2)))
    weights = torch.tensor([0.1, 0.2, 0.3, 0.1, 0.2, 0.1])  # text, text, then cells (0,0) (0,1) (1,0) (1,1)
    layers = [weights.expand(1, 2, 2, 6), weights.roll(1).expand(1, 2, 2, 6)]  # [B, H, T, S], mean over both
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 1.0], [float("nan")] * 4]])  # step 0: the left column; step 1: none
    penalty = box_attention_penalty(layers, encoder_out, boxes)
    mean = (weights + weights.roll(1)) / 2
    assert torch.allclose(penalty, torch.tensor([[1 - mean[2] - mean[4], 0.0]]))
    two_images = EncoderOut(**{**encoder_out.__dict__, "spans": (("image_patch", 0, 2), ("image_patch", 2, 6)),
                               "grids": ((1, 2), (2, 2))})
    assert torch.equal(box_attention_penalty(layers, two_images, boxes), torch.zeros(1, 2))  # which grid? none


def test_each_coordinate_step_is_given_the_edge_its_coordinate_names():
    nan = [float("nan")] * 4
    first, second = [0.1, 0.2, 0.6, 0.9], [0.0, 0.5, 0.25, 0.75]
    boxes = torch.tensor([[nan, *[first] * 4, *[second] * 4, nan, *[first] * 4]])  # two boxes in a row, then one
    has_box = ~boxes.isnan().any(-1)
    edges = edge_boxes(boxes.nan_to_num(0.0), has_box)[0]

    def strips(x0, y0, x1, y1):  # x0's step: the left edge, y0's: the top, x1's: the right, y1's: the bottom
        return [[x0, y0, x0, y1], [x0, y0, x1, y0], [x1, y0, x1, y1], [x0, y1, x1, y1]]

    assert torch.allclose(edges[1:9], torch.tensor(strips(*first) + strips(*second)))
    assert torch.allclose(edges[10:], torch.tensor(strips(*first)))


def test_the_edge_region_is_the_strip_one_cell_wide_along_the_coordinates_edge():
    encoder_out = EncoderOut(x=torch.zeros(1, 16, 2), padding_mask=torch.zeros(1, 16, dtype=torch.bool),
                             position_embeddings=torch.zeros(1, 16, 2), spans=(("image_patch", 0, 16),),
                             grids=((4, 4),))
    box = [0.25, 0.25, 1.0, 0.75]  # columns 1-3, rows 1-2 of a 4 x 4 grid
    boxes = torch.tensor([[box] * 4])
    left_column = torch.zeros(4, 4)
    left_column[1:3, 1] = 0.5  # all the mass on the box's cells along its left edge
    weights = [left_column.flatten().expand(1, 2, 4, 16)]
    edge = box_attention_penalty(weights, encoder_out, boxes, "edge")[0]
    # each strip is one cell wide about its edge: x0's covers half of columns 0 and 1 in rows 1-2 (mass 0.5 inside),
    # y0's half of rows 0 and 1 (0.25: half of cell (1, 1)), x1's columns 3-4 (none), y1's half of rows 2 and 3 (0.25)
    assert torch.allclose(edge, torch.tensor([0.5, 0.75, 1.0, 0.75]))
    assert torch.allclose(box_attention_penalty(weights, encoder_out, boxes, "box")[0], torch.zeros(4))
    both = box_attention_penalty(weights, encoder_out, boxes, "box_and_edge")[0]
    assert torch.allclose(both, edge / 2)  # the whole box's part is met


def square_rows(count: int, seed: int) -> list[dict]:
    """32 px noise with one red square filling a random cell of the 4 x 4 patch grid; the box is that cell."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        image = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
        row, col = rng.integers(0, GRID, 2)
        image[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL] = (230, 30, 30)
        rows.append({"img": image, "box": [col * CELL, row * CELL, (col + 1) * CELL, (row + 1) * CELL]})
    return rows


def mass_in_the_box(model, encoder: RowEncoder, rows: list[dict]) -> float:
    """Mean cross-attention mass (layers, heads, the 4 bin steps) on the square's own patch, as a share of the
    mass on image patches; the patch is found from the row's pixels, not from the criterion's code."""
    sample = encoder.collate([encoder.encode(row, ctx("valid", i)) for i, row in enumerate(rows)])
    model.eval()
    with torch.no_grad():
        _, extra = model(sample, cross_attention=True)
    (start, end), = [(s, e) for (name, s, e) in extra["encoder_out"].spans if name == "image_patch"]
    mass = torch.stack([w.mean(1) for w in extra["cross_attention"]]).mean(0)[:, :4, start:end]  # [B, 4, cells]
    cells = torch.tensor([row["box"][1] // CELL * GRID + row["box"][0] // CELL for row in rows])
    inside = mass.gather(-1, cells[:, None, None].expand(-1, 4, 1)).squeeze(-1)
    return float((inside / mass.sum(-1)).mean())


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_the_criterion_adds_the_weighted_penalty(tokenizer, tmp_path, weight):  # noqa: F811
    trainer = Trainer(**options(tokenizer, tmp_path, max_update=1, box_attention=weight,
                                box_attention_region="box_and_edge"))
    model = trainer.fit(tasks=[Task(name="where", instruction=WHERE).add_dataset(square_rows(8, 0), "train")])
    encoder = trainer.encoders["where"]
    sample = encoder.collate([encoder.encode(row, ctx("valid", i)) for i, row in enumerate(square_rows(4, 1))])
    model.eval()
    plain, _, plain_log = LabelSmoothedCE(LabelSmoothedCEConfig(box_attention=0.0))(model, sample)
    guided, _, log = LabelSmoothedCE(LabelSmoothedCEConfig(box_attention=3.0))(model, sample)
    assert "box_attention" not in plain_log and log["box_attention"] > 0
    assert torch.allclose(guided - plain, torch.tensor(3.0 * log["box_attention"]), rtol=1e-5)
    edge = LabelSmoothedCE(LabelSmoothedCEConfig(box_attention=3.0, box_attention_region="edge"))
    assert edge(model, sample)[2]["box_attention"] != log["box_attention"]  # it guides to the region it is given
    assert trainer.criteria["where"].cfg.box_attention == weight
    assert trainer.criteria["where"].cfg.box_attention_region == "box_and_edge"
    with pytest.raises(ValueError, match="box_attention_region='edges': must be one of box, edge, box_and_edge"):
        Trainer(**options(tokenizer, tmp_path, box_attention_region="edges"))


def test_memory_positions_start_at_zero_and_are_learnt(tokenizer, tmp_path):  # noqa: F811
    with_scale = GeneralistModel(vocab_size=300, adaptor_names=["text", "image_patch"], arch="micro")
    assert with_scale.cfg.memory_positions and not with_scale.encoder.memory_position_scale.any()
    without = GeneralistModel(vocab_size=300, adaptor_names=["text", "image_patch"], arch="micro",
                              memory_positions=False)
    assert without.encoder.memory_position_scale is None and not resolve_config(ModelConfig(arch="ofa_base")).memory_positions
    state = {k: v for k, v in with_scale.state_dict().items() if k != "encoder.memory_position_scale"}
    without.load_state_dict(state)
    pieces = [{"modality": "IMAGE", "adaptor": "image_patch", "image": torch.randn(2, 3, 32, 32)}]
    with_scale.eval(), without.eval()
    assert torch.equal(with_scale.encoder(pieces).x, without.encoder(pieces).x)  # a model at init: no change
    with_scale.encoder.memory_position_scale.data.fill_(0.5)
    out = with_scale.encoder(pieces)
    assert torch.allclose(out.x, without.encoder(pieces).x + 0.5 * out.position_embeddings, atol=1e-6)

    trainer = Trainer(**options(tokenizer, tmp_path, max_update=3))
    model = trainer.fit(tasks=[Task(name="where", instruction=WHERE).add_dataset(square_rows(12, 0), "train")])
    assert model.encoder.memory_position_scale.abs().max() > 0


def test_training_with_the_penalty_makes_the_decoder_look_inside_the_box(tokenizer, tmp_path):  # noqa: F811
    held_out = square_rows(32, 99)
    shares = {}
    for weight in (0.0, 5.0):
        trainer = Trainer(**options(tokenizer, tmp_path / str(weight), max_update=40, batch_size=8,
                                    box_attention=weight))
        model = trainer.fit(tasks=[Task(name="where", instruction=WHERE).add_dataset(square_rows(160, 0), "train")])
        shares[weight] = mass_in_the_box(model, trainer.encoders["where"], held_out)
    assert shares[5.0] > 0.5 and shares[0.0] < 0.25, shares  # a cell's uniform share is 1 / 16
