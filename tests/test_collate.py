"""RowEncoder, collation and TaskDataset: groups, padding, shifted decoder, prompts, constraints, limits, errors."""
from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from ofasys_fs.contracts import Preprocessor, SampleContext
from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig, loss_token_mask
from ofasys_fs.data.dataset import TaskDataset
from ofasys_fs.data.encode import EncodeError, RowEncoder
from ofasys_fs.data.trie import Trie
from ofasys_fs.errors import DataError
from ofasys_fs.instruction import register_attr_schema
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import register_preprocessor
from ofasys_fs.tasks.base import Task
from ofasys_fs.vocab import Vocabulary

register_attr_schema("size_only_image_test", {"IMAGE"}, {}, sides=("encoder",), adaptor="image_patch")
register_attr_schema("unimplemented_test", {"IMAGE"}, {}, sides=("encoder",), adaptor="image_patch")


@register_preprocessor("size_only_image_test")
class SizeOnlyImage(Preprocessor):
    """An image preprocessor without "orig_size": the RowEncoder must read the size from the image itself."""

    modality = "IMAGE"

    def __call__(self, value, ctx):
        return {"image": torch.zeros(3, 2, 2)}

    def collate(self, items):
        return {"image": torch.stack([item["image"] for item in items])}


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.default(num_bins=100, num_codes=0)


def ctx(split="valid", row=0, epoch=0, **kwargs) -> SampleContext:
    return SampleContext(split=split, task="t", row_index=row, epoch=epoch, **kwargs)


def batch(encoder: RowEncoder, rows: list, split="valid") -> dict:
    return encoder.collate([encoder.encode(row, ctx(split, i)) for i, row in enumerate(rows)])


def piece(vocab, text: str) -> list:
    return vocab.encode_piece(text)


class ZeroModel(torch.nn.Module):
    """Uniform logits: enough for the criterion to count loss tokens."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, sample):
        target = sample["target"]
        return torch.zeros(*target.shape, self.vocab_size), {}


# ---------------------------------------------------------------------------------------------- groups


def test_groups_are_padded_and_the_decoder_is_shifted(vocab):
    encoder = RowEncoder("t", "describe [TEXT:a] please -> [TEXT:b]", vocab)
    sample = batch(encoder, [{"a": "one", "b": "x"}, {"a": "one two three four", "b": "longer target here"}])
    group = sample["net_input"]["encoder"][0]
    first = [vocab.bos, *piece(vocab, "describe"), *piece(vocab, "one"), *piece(vocab, "please"), vocab.eos]
    assert group["modality"] == "TEXT" and group["adaptor"] == "text"
    assert group["tokens"][0, : len(first)].tolist() == first
    assert (group["tokens"][0, len(first):] == vocab.pad).all()
    assert group["padding_mask"][0].tolist() == [False] * len(first) + [True] * (group["tokens"].size(1) - len(first))
    assert not group["padding_mask"][1].any()
    decoder = [vocab.bos, *piece(vocab, "longer target here"), vocab.eos]
    assert sample["net_input"]["prev_output_tokens"][1].tolist() == decoder[:-1]
    assert sample["target"][1].tolist() == decoder[1:]
    assert sample["target"][0].tolist() == [*piece(vocab, "x"), vocab.eos] + [vocab.pad] * (len(decoder) - 3)
    assert sample["ntokens"] == len(piece(vocab, "x")) + 1 + len(decoder) - 1
    assert sample["id"].tolist() == [0, 1] and sample["nsentences"] == 2 and sample["task"] == "t"


def test_non_text_pieces_split_groups_and_use_their_preprocessor(vocab):
    encoder = RowEncoder("t", "look [IMAGE:img,preprocess=size_only_image_test] then [TEXT:a] -> [BOX:b]", vocab)
    image = Image.new("RGB", (40, 20))
    sample = batch(encoder, [{"img": image, "a": "q", "b": "0,0,20,10"}] * 2)
    pieces = sample["net_input"]["encoder"]
    assert [p["modality"] for p in pieces] == ["TEXT", "IMAGE", "TEXT"]
    assert pieces[1]["image"].shape == (2, 3, 2, 2) and pieces[1]["adaptor"] == "image_patch"
    # the preprocessor gave no orig_size, so the size came from the image: (20/40, 10/20) -> bin 50
    assert sample["target"][0, :4].tolist() == [vocab.bin_id(b) for b in (0, 0, 50, 50)]
    assert sample["image_sizes"][0]["img"].width == 40


def test_disable_auto_boseos_drops_the_wrap(vocab):
    example = RowEncoder("t", "[TEXT:a,disable_auto_boseos] -> [TEXT:b]", vocab).encode({"a": "hi", "b": "x"}, ctx())
    assert example.encoder[0]["tokens"].tolist() == piece(vocab, "hi")
    with pytest.raises(ValueError, match="disable_auto_boseos on the decoder"):
        RowEncoder("t", "[TEXT:a] -> [TEXT:b,disable_auto_boseos]", vocab)


# ---------------------------------------------------------------------------------------------- decoder prompts


def test_decoder_prompts_are_a_forced_prefix_and_later_literals_get_no_loss(vocab):
    encoder = RowEncoder("t", "[TEXT:q] -> answer: [TEXT:a] , [TEXT:note,no_loss] done", vocab)
    sample = batch(encoder, [{"q": "q", "a": "yes", "note": "sure"}, {"q": "q", "a": "no way", "note": "n"}])
    prompt, tail = piece(vocab, "answer:"), piece(vocab, ",") + piece(vocab, "sure") + piece(vocab, "done")
    answer = piece(vocab, "yes")
    assert sample["prefix_lengths"].tolist() == [len(prompt)] * 2
    assert sample["prefix_tokens"][0].tolist() == prompt
    target = sample["target"][0].tolist()
    assert target[: len(prompt)] == prompt  # kept; the criterion skips it by prefix_lengths
    assert target[len(prompt): len(prompt) + len(answer)] == answer
    assert target[len(prompt) + len(answer): len(prompt) + len(answer) + len(tail)] == [vocab.pad] * len(tail)
    assert target[len(prompt) + len(answer) + len(tail)] == vocab.eos
    prev = sample["net_input"]["prev_output_tokens"][0].tolist()
    assert prev[1 + len(prompt) + len(answer):][: len(tail)] == tail  # teacher forcing still sees the literals
    assert sample["ntokens"] == len(answer) + 1 + len(piece(vocab, "no way")) + 1
    assert int(loss_token_mask(sample).sum()) == sample["ntokens"]
    _, sample_size, _ = LabelSmoothedCE()(ZeroModel(len(vocab)), sample)
    assert sample_size == sample["ntokens"]


def test_inference_rows_give_prefixes_without_targets(vocab):
    encoder = RowEncoder("t", "[TEXT:q] -> answer: [TEXT:hint,no_loss] [TEXT:a]", vocab)
    sample = batch(encoder, [{"q": "q", "hint": "h"}, {"q": "q", "hint": "longer hint"}], split="inference")
    assert "target" not in sample and "prev_output_tokens" not in sample["net_input"] and sample["ntokens"] == 0
    assert sample["prefix_tokens"][1].tolist() == piece(vocab, "answer:") + piece(vocab, "longer hint")
    prompt = len(piece(vocab, "answer:"))
    hints = [len(piece(vocab, "h")), len(piece(vocab, "longer hint"))]
    assert sample["prefix_lengths"].tolist() == [prompt + hint for hint in hints]
    with pytest.raises(EncodeError, match="prompt slot .* has no value"):
        encoder.encode({"q": "q"}, ctx("inference"))
    with_target = encoder.encode({"q": "q", "hint": "h", "a": "x"}, ctx("test"))
    without = encoder.encode({"q": "q", "hint": "h"}, ctx("test", row=1))
    with pytest.raises(ValueError, match=r"rows \[1\] have no target"):
        encoder.collate([with_target, without])


def test_text_phone_targets_are_collated(vocab):
    encoder = RowEncoder("t", "[TEXT:x] -> [TEXT:text,preprocess=text_phone]", vocab)
    sample = batch(encoder, [{"x": "a", "text": "hello"}, {"x": "a", "text": "hello world"}])
    assert sample["phone_target_lengths"].tolist() == [4, 9]
    assert sample["phone_targets"][0, 4:].tolist() == [vocab.pad] * 5
    assert sample["phone_targets"][1, 4].item() == vocab.phone_id("|")


# ---------------------------------------------------------------------------------------------- constraints


def test_trie_lists_allowed_continuations():
    trie = Trie([[5, 6, 2], [5, 7, 2], [9, 2], [5, 6, 2]])
    assert len(trie) == 3
    assert trie.allowed([]) == [5, 9] and trie.allowed([5]) == [6, 7] and trie.allowed([5, 6]) == [2]
    assert trie.allowed([5, 6, 2]) == [] and trie.allowed([8]) == []
    assert [9, 2] in trie and [5] not in trie and [4] not in trie


def test_box_positions_allow_only_bins(vocab):
    encoder = RowEncoder("t", "[TEXT:a] -> region [BOX:b,size=10,10] of [TEXT:c]", vocab)
    sample = batch(encoder, [{"a": "q", "b": "1,1,5,5", "c": "cat"}])
    masks, bins = sample["constraint_masks"], vocab.range("bin")
    start = len(piece(vocab, "region"))
    assert masks.shape == (1, sample["target"].size(1), len(vocab))
    for position in range(start, start + 4):
        allowed = masks[0, position].nonzero().flatten().tolist()
        assert allowed == list(bins)
    assert masks[0, :start].all() and masks[0, start + 4:].all()
    LabelSmoothedCE(LabelSmoothedCEConfig(box_attention=0.0))(ZeroModel(len(vocab)), sample)  # every target allowed


def test_closed_set_positions_follow_the_answer_trie(vocab):
    answers = ["red car", "red bus", "blue"]
    encoder = RowEncoder("t", "[TEXT:q] -> [TEXT:a,closed_set,uncased]", vocab, answers=answers)
    sample = batch(encoder, [{"q": "q", "a": "Red Bus"}, {"q": "q", "a": "blue"}])
    masks = sample["constraint_masks"]
    red, car, bus, blue = (piece(vocab, w) for w in ("red", "car", "bus", "blue"))
    assert len(red) == len(car) == len(bus) == len(blue) == 1
    assert masks[0, 0].nonzero().flatten().tolist() == sorted(red + blue)
    assert masks[0, 1].nonzero().flatten().tolist() == sorted(car + bus)
    assert masks[0, 2].nonzero().flatten().tolist() == [vocab.eos]
    assert masks[1, 1].nonzero().flatten().tolist() == [vocab.eos] and masks[1, 2].all()  # row 1's padding
    with pytest.raises(EncodeError, match=r"'green' of the closed_set slot .* not one of the task's 3 answers"):
        encoder.encode({"q": "q", "a": "green"}, ctx("train"))
    with pytest.warns(UserWarning, match=r"'green' .* not one of the task's 3 answers .* count as misses"):
        outside = encoder.encode({"q": "q", "a": "green"}, ctx("valid"))  # a benchmark answer never trained on
    assert outside.constraints == [] and outside.decoder_tokens is not None
    with pytest.raises(ValueError, match="closed_set slot .* needs the task's answers"):
        RowEncoder("t", "[TEXT:q] -> [TEXT:a,closed_set]", vocab)


def test_unconstrained_batches_have_no_masks(vocab):
    assert "constraint_masks" not in batch(RowEncoder("t", "[TEXT:a] -> [TEXT:b]", vocab), [{"a": "x", "b": "y"}])


# ---------------------------------------------------------------------------------------------- repetition


def test_repetition_expands_in_order_caps_and_accepts_column_dicts(vocab):
    encoder = RowEncoder("t", "[TEXT:a] -> ( [BOX:objs.box,size=10,10] [TEXT:objs.label] )*", vocab)
    objs = [{"box": "0,0,10,10", "label": "cat"}, {"box": "0,0,5,5", "label": "dog"}]
    example = encoder.encode({"a": "q", "objs": objs}, ctx())
    full = [vocab.bin_id(b) for b in (0, 0, 99, 99)]
    assert example.decoder_tokens.tolist() == [vocab.bos, *full, *piece(vocab, "cat"),
                                               *[vocab.bin_id(b) for b in (0, 0, 50, 50)], *piece(vocab, "dog"),
                                               vocab.eos]
    columns = {"box": ["0,0,10,10", "0,0,5,5"], "label": ["cat", "dog"]}
    assert encoder.encode({"a": "q", "objs": columns}, ctx()).decoder_tokens.tolist() == example.decoder_tokens.tolist()
    capped = RowEncoder("t", "[TEXT:a] -> ( [BOX:objs.box,size=10,10,max_repeat=1] [TEXT:objs.label] )*", vocab)
    assert capped.encode({"a": "q", "objs": objs}, ctx()).decoder_tokens.tolist() == \
        [vocab.bos, *full, *piece(vocab, "cat"), vocab.eos]
    assert encoder.encode({"a": "q", "objs": []}, ctx()).decoder_tokens.tolist() == [vocab.bos, vocab.eos]
    assert encoder.encode({"a": "q"}, ctx("test")).decoder_tokens is None  # missing list: no target, not "no objects"


# ---------------------------------------------------------------------------------------------- limits


def test_long_groups_are_errors_or_truncated_and_counted(vocab):
    row = {"a": "one two three four five six seven", "b": "a b c d e f g h"}
    source = len(piece(vocab, row["a"])) + 2
    with pytest.raises(EncodeError, match=rf"task 't', row 4: encoder text group 0 has {source} tokens, more than "
                                          r"max_source_positions=5"):
        RowEncoder("t", "[TEXT:a] -> [TEXT:b]", vocab, DataConfig(max_source_positions=5)).encode(row, ctx(row=4))
    with pytest.raises(EncodeError, match="max_target_positions=4"):
        RowEncoder("t", "[TEXT:a] -> [TEXT:b]", vocab, DataConfig(max_target_positions=4)).encode(row, ctx())
    encoder = RowEncoder("t", "[TEXT:a] -> [TEXT:b]", vocab,
                         DataConfig(max_source_positions=5, max_target_positions=4, truncate_long=True))
    example = encoder.encode(row, ctx())
    assert example.encoder[0]["tokens"].tolist() == [vocab.bos, *piece(vocab, row["a"])[:3], vocab.eos]
    assert example.decoder_tokens.tolist() == [vocab.bos, *piece(vocab, row["b"])[:3], vocab.eos]
    assert example.target_length == 4 and encoder.truncations == 2


def test_templates_are_drawn_per_row_and_epoch(vocab):
    encoder = RowEncoder("t", "describe [TEXT:a] -> [TEXT:b] ||| summarise [TEXT:a] -> [TEXT:b]", vocab)
    row = {"a": "x", "b": "y"}
    drawn = [encoder.encode(row, ctx("train", i)).template for i in range(20)]
    assert set(drawn) == {0, 1}
    assert drawn == [encoder.encode(row, ctx("train", i)).template for i in range(20)]


def test_unavailable_preprocessors_and_outputs_are_named(vocab):
    with pytest.raises(ValueError, match="needs preprocessor 'unimplemented_test', which is not registered"):
        RowEncoder("t", "[IMAGE:img,preprocess=unimplemented_test] -> [TEXT:b]", vocab)
    with pytest.raises(ValueError, match="cannot build the slot .*: no image tokenizer"):
        RowEncoder("t", "[TEXT:a] -> [IMAGE]", vocab)


# ---------------------------------------------------------------------------------------------- dataset


def test_task_dataset_keys_and_error_context(vocab, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": "a long enough sentence to mask here", "b": "0,0,5,5"}\n{"a": "x", "b": "1,2"}\n'
                    '{"a": "x"}\n', encoding="utf-8")
    task = Task(name="ground", instruction="[TEXT:a,mask_ratio=0.5] -> [BOX:b,size=10,10]").add_dataset(str(path))
    dataset = TaskDataset(task, "train", RowEncoder.for_task(task, vocab), seed=3)
    assert len(dataset) == 3
    first = dataset[(0, 0)].encoder[0]["tokens"].tolist()
    assert first == dataset[0].encoder[0]["tokens"].tolist()
    assert any(dataset[(0, epoch)].encoder[0]["tokens"].tolist() != first for epoch in range(1, 5))
    with pytest.raises(DataError, match=rf"task 'ground', split 'train', {path}, line 2 \(row 1\), column 'b': "
                                        r"box '1,2' has 2 numbers"):
        dataset[1]
    with pytest.raises(DataError, match=r"task 'ground', split 'train', .*line 3 \(row 2\): column 'b' needed by"):
        dataset[2]
    with pytest.raises(ValueError, match="has no 'valid' data"):
        TaskDataset(task, "valid", dataset.encoder)
    assert dataset.collater([dataset[0]])["target"].shape == (1, 5)


def test_encoder_and_errors_survive_pickling_for_workers(vocab):
    encoder = RowEncoder("t", "[PHONE:p,mask_ratio=0.3] -> [TEXT:a,closed_set]", vocab, answers=["x", "y"])
    copy = pickle.loads(pickle.dumps(encoder))
    row, train = {"p": "hello there world", "a": "x"}, ctx("train", 2)
    assert copy.encode(row, train).encoder[0]["tokens"].tolist() == encoder.encode(row, train).encoder[0]["tokens"].tolist()
    error = pickle.loads(pickle.dumps(EncodeError("bad box", "t", 3, "objs[0].box")))
    assert str(error) == "task 't', row 3, column 'objs[0].box': bad box" and error.column == "objs[0].box"


def test_literal_text_takes_its_groups_adaptor():
    import os

    from ofasys_fs import import_user_dir
    from ofasys_fs.contracts import SampleContext
    from ofasys_fs.data.encode import RowEncoder
    from ofasys_fs.instruction import Instruction
    from ofasys_fs.vocab import Vocabulary

    import_user_dir(os.path.join(os.path.dirname(__file__), os.pardir, "user_dir"))
    template = Instruction.parse('reverse " [TEXT:src,adaptor=text_conv] " -> [TEXT:tgt]')
    encoder = RowEncoder("rev", [template], Vocabulary.default(num_bins=10, num_codes=0))
    example = encoder.encode({"src": "a b", "tgt": "b a"}, SampleContext(split="train", task="rev"))
    assert [piece["adaptor"] for piece in example.encoder] == ["text_conv"]
