"""Classifier-free guidance, one mechanism for IMAGE and MOTION outputs (guidance.py): the empty prompt made on a
collated encoder input, the guided combination, and the one training setting (condition_dropout) dropping the
prompt of a share of rows of every task whose output a guiding generator decodes, whatever its criterion."""
import pytest
import torch
from conftest import text_to_image_rows

from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.guidance import HIDDEN_ROWS, drop_prompt, guided, with_condition_dropout
from ofasys_fs.inference.decoding import generated_with_guidance
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.registry import build_task
from ofasys_fs.tasks.base import Task
from ofasys_fs.tokenizer import BOS, EOS, PAD
from ofasys_fs.vocab import Vocabulary

CAPTION_DIGITS = "[IMAGE:img] what does the image describe? -> [TEXT:text]"


def empty_rows(tokens: torch.Tensor) -> torch.Tensor:
    """Rows of a text group that are the empty prompt, `<s> </s>` then padding."""
    return (tokens[:, 0] == BOS) & (tokens[:, 1] == EOS) & (tokens[:, 2:] == PAD).all(1)


def pieces_of(batch: int = 2) -> list[dict]:
    """An image piece (for the micro arch's image_patch adaptor) and a text group, as a collated sample holds."""
    tokens = torch.tensor([[BOS, 7, 8, 9, EOS], [BOS, 5, EOS, PAD, PAD]])[:batch]
    return [{"modality": "IMAGE", "adaptor": "image_patch", "image": torch.randn(batch, 3, 32, 32)},
            {"modality": "TEXT", "adaptor": "text", "tokens": tokens, "padding_mask": tokens.eq(PAD)}]


def test_the_empty_prompt_empties_the_text_and_hides_the_other_pieces_of_the_chosen_rows_only():
    pieces = pieces_of()
    first = drop_prompt(pieces, torch.tensor([True, False]))
    assert first[1]["tokens"].tolist() == [[BOS, EOS, PAD, PAD, PAD], [BOS, 5, EOS, PAD, PAD]]
    assert first[1]["padding_mask"].tolist() == [[False, False, True, True, True], [False, False, False, True, True]]
    assert first[0][HIDDEN_ROWS].tolist() == [True, False] and first[0]["image"] is pieces[0]["image"]
    assert pieces[1]["tokens"][0, 1] == 7 and HIDDEN_ROWS not in pieces[0]  # the input is left as it was
    everyone = drop_prompt(pieces)  # no rows given: every row (the generators' case)
    assert empty_rows(everyone[1]["tokens"]).all() and everyone[0][HIDDEN_ROWS].all()


def test_the_encoder_masks_a_hidden_piece_whatever_its_adaptor_returns():
    """image_patch reads no padding mask of its own; a dropped row's encoding cannot depend on its image."""
    model = GeneralistModel(arch="micro", dropout=0.0).build(100, ["text", "image_patch"]).eval()
    pieces = drop_prompt(pieces_of(), torch.tensor([True, False]))
    other_images = [{**pieces[0], "image": torch.randn(2, 3, 32, 32)}, pieces[1]]
    with torch.no_grad():
        out, other = model.encoder(pieces), model.encoder(other_images)
    image, prompt = slice(0, out.padding_mask.size(1) - 5), slice(-5, -3)  # the image's positions, then <s> </s>
    assert out.padding_mask[0, image].all() and not out.padding_mask[1, image].any()
    torch.testing.assert_close(out.x[0, prompt], other.x[0, prompt])
    assert not torch.allclose(out.x[1], other.x[1])  # the row that keeps its prompt sees its image


def test_guidance_extrapolates_from_the_unconditional_prediction():
    conditional, unconditional = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(guided(conditional, unconditional, 1.0), conditional)
    assert torch.equal(guided(conditional, unconditional, 0.0), unconditional)
    weight = 2.0  # OFASys's guidance_weight w: (1 + w) cond - w uncond
    assert torch.equal(guided(conditional, unconditional, 1 + weight),
                       (1 + weight) * conditional - weight * unconditional)


def test_condition_dropout_drops_its_share_of_rows_the_same_in_any_batch():
    def dropped(ids: list, share: float = 0.25, update: int = 7) -> torch.Tensor:
        tokens = torch.full((len(ids), 4), 9)
        sample = {"task": "t2i", "id": torch.tensor(ids), "net_input": {"encoder": [{"tokens": tokens}]}}
        return empty_rows(with_condition_dropout(sample, share, 1, update)["net_input"]["encoder"][0]["tokens"])

    rows = dropped(list(range(4000)))
    assert 0.23 < rows.float().mean() < 0.27 and not dropped(list(range(4000)), share=0.0).any()
    assert torch.equal(dropped([3999, 5, 17]), rows[[3999, 5, 17]])  # per row: batching does not matter
    assert not torch.equal(dropped(list(range(4000)), update=8), rows)  # another update draws again


@pytest.mark.parametrize("instruction, guides", [
    ('what is the complete image? caption: [TEXT:text]"? -> [IMAGE:img,preprocess=image_vqgan,tokenizer={}]', True),
    ("[IMAGE:img,mask_ratio=0.5] what is the complete image? -> [IMAGE:img,preprocess=image_vqgan,tokenizer={}]", True),
    ("[TEXT:caption] -> [MOTION:clip,max_length=24]", True),
    (CAPTION_DIGITS, False),
    ("[TEXT:src] -> [TEXT:tgt]", False),
])
def test_outputs_generated_with_guidance_are_those_of_a_guiding_generator(instruction, guides, image_tokenizer):
    vocab = Vocabulary.default(num_bins=0, num_codes=image_tokenizer.tokenizer.num_codes)
    encoder = RowEncoder("t", instruction.format(image_tokenizer.path), vocab)
    assert generated_with_guidance(encoder) is guides
    assert generated_with_guidance(encoder, {"generator": "sequence"}) is False  # a task's generator choice counts


def test_training_drops_the_prompt_of_image_code_targets_under_cross_entropy_and_not_of_text_outputs(
        image_tokenizer, tmp_path, monkeypatch):
    """text_to_image (image codes, label_smoothed_ce) and a captioning task trained together: condition_dropout
    empties the prompt of a share of text_to_image's rows and of none of the captioning rows."""
    seen = {}
    forward = LabelSmoothedCE.forward

    def spy(self, model, sample):
        text = next(piece for piece in sample["net_input"]["encoder"] if "tokens" in piece)["tokens"]
        seen.setdefault(sample["task"], []).append(empty_rows(text))
        return forward(self, model, sample)

    monkeypatch.setattr(LabelSmoothedCE, "forward", spy)
    rows = text_to_image_rows()[0][:32]

    def train(share: float) -> dict:
        seen.clear()
        tasks = [build_task("text_to_image").add_dataset(rows, "train"),
                 Task(name="caption_digits", instruction=CAPTION_DIGITS).add_dataset(rows, "train")]
        Trainer(image_tokenizer=image_tokenizer.path, arch="micro", device="cpu", num_bins=0, batch_size=16,
                max_update=2, sampling="all", no_save=True, save_dir=str(tmp_path), log_interval=1000,
                condition_dropout=share, seed=1).fit(tasks=tasks)
        return {task: torch.cat(flags) for task, flags in seen.items()}

    dropped = train(0.5)
    assert len(dropped["text_to_image"]) == 32 and 0.2 < dropped["text_to_image"].float().mean() < 0.8
    assert len(dropped["caption_digits"]) == 32 and not dropped["caption_digits"].any()
    assert not train(0.0)["text_to_image"].any()
