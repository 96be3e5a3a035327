"""The text-like preprocessors: text, struct, phone, text_phone, category and box."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ofasys_fs.preprocess  # noqa: F401  (registers the built-in preprocessors)
from ofasys_fs.contracts import SampleContext
from ofasys_fs.instruction import Instruction
from ofasys_fs.preprocess.box import parse_box
from ofasys_fs.preprocess.image import ImageGeometry
from ofasys_fs.preprocess.phone import cmu_lexicon, letter_phones, text_to_phones
from ofasys_fs.preprocess.struct import linearise_table
from ofasys_fs.preprocess.text import normalise_text, span_mask
from ofasys_fs.registry import build_preprocessor
from ofasys_fs.vocab import Vocabulary

LONG_TEXT = " ".join(f"word{i % 37} the cat sat on mat number {i}" for i in range(60))


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.default(num_bins=100, num_codes=0)


def build(vocab, slot_text: str, side: str = "encoder"):
    instruction = f"{slot_text} -> [TEXT:out]" if side == "encoder" else f"[TEXT:src] -> {slot_text}"
    slot = getattr(Instruction.parse(instruction), side)[0]
    return build_preprocessor(slot.preprocess, slot, vocab, None)


def ctx(split="train", epoch=0, row=3, **kwargs) -> SampleContext:
    return SampleContext(split=split, task="t", row_index=row, epoch=epoch, seed=1, **kwargs)


def ids(output) -> list:
    return output["tokens"].tolist()


# ---------------------------------------------------------------------------------------------- text


def test_normalise_lowercases_drops_punctuation_and_collapses_spaces():
    assert normalise_text("  A  Cat,\n sat! «Hi» ", uncased=True, no_punctuation=True) == "a cat sat hi"
    assert normalise_text("A  Cat, sat", uncased=False) == "A Cat, sat"


def test_text_tokens_are_the_normalised_piece_truncated(vocab):
    assert ids(build(vocab, "[TEXT:t,uncased,no_punctuation]")("The Cat, sat.", ctx("valid"))) == \
        vocab.encode_piece("the cat sat")
    truncated = build(vocab, "[TEXT:t,max_length=3]")(LONG_TEXT, ctx("train"))
    assert ids(truncated) == vocab.encode_piece(LONG_TEXT)[:3]


def test_text_reference_lists_pick_first_at_valid_and_draw_at_train(vocab):
    pre = build(vocab, "[TEXT:t]")
    references = [f"caption number {i}" for i in range(8)]
    assert ids(pre(references, ctx("valid"))) == vocab.encode_piece(references[0])
    drawn = {tuple(ids(pre(references, ctx("train", epoch=e)))) for e in range(6)}
    assert len(drawn) > 1 and drawn <= {tuple(vocab.encode_piece(r)) for r in references}


def test_text_rejects_non_strings_naming_the_slot(vocab):
    with pytest.raises(ValueError, match=r"text slot \[TEXT:t\] expects a string, got dict"):
        build(vocab, "[TEXT:t]")({"a": 1}, ctx())
    with pytest.raises(ValueError, match="empty list"):
        build(vocab, "[TEXT:t]")([], ctx())


def test_span_mask_masks_exactly_the_ratio_in_spans():
    rng = np.random.default_rng(0)
    tokens = list(range(10, 1010))
    out = span_mask(tokens, 0.3, rng, mask_id=-1)
    kept = [t for t in out if t != -1]
    assert len(tokens) - len(kept) == 300
    assert kept == sorted(kept)  # the unmasked tokens keep their order
    spans = out.count(-1)
    assert 300 / 8 < spans < 300 / 1.5  # spans of mean length ~3, not single tokens
    assert all(not (a == b == -1) for a, b in zip(out, out[1:]))  # one <mask> per span


def test_masking_is_train_only_deterministic_and_changes_with_epoch(vocab):
    pre = build(vocab, "[TEXT:t,mask_ratio=0.3]")
    plain = vocab.encode_piece(LONG_TEXT)
    assert ids(pre(LONG_TEXT, ctx("valid"))) == plain
    first = ids(pre(LONG_TEXT, ctx("train", epoch=0)))
    assert first == ids(pre(LONG_TEXT, ctx("train", epoch=0)))
    assert first != ids(pre(LONG_TEXT, ctx("train", epoch=1)))
    assert first != ids(pre(LONG_TEXT, ctx("train", epoch=0, row=4)))
    masked = len(plain) - (len(first) - first.count(vocab.mask))
    assert masked == round(len(plain) * 0.3)


def test_noise_replaces_the_ratio_with_text_ids_at_train_only(vocab):
    pre = build(vocab, "[TEXT:t,noise_ratio=0.2]")
    plain = vocab.encode_piece(LONG_TEXT)
    noisy = ids(pre(LONG_TEXT, ctx("train")))
    assert len(noisy) == len(plain) and all(t in vocab.range("text") for t in noisy)
    changed = sum(a != b for a, b in zip(plain, noisy))
    assert 0.1 * len(plain) < changed <= 0.2 * len(plain) + 1
    assert ids(pre(LONG_TEXT, ctx("test"))) == plain


def test_text_postprocess_decodes(vocab):
    pre = build(vocab, "[TEXT:t]")
    assert pre.postprocess(vocab.encode_piece("a red car") + [vocab.eos]) == "a red car"


# ---------------------------------------------------------------------------------------------- struct


def test_struct_linearises_rows_headers_and_db_schemas():
    assert linearise_table([["Atlanta", "YEAR", 2012], ["a", None, "b"]]) == "Atlanta : YEAR : 2012 | a :  : b"
    assert linearise_table({"header": ["name", "age"], "rows": [["Ann", 30]]}) == "name : age | Ann : 30"
    schema = [["singer", "singer_id , name"], ["concert", "concert_id , year"]]
    assert linearise_table(schema) == "singer : singer_id , name | concert : concert_id , year"
    assert linearise_table("already : linear") == "already : linear"


def test_struct_normalises_cells_but_keeps_separators(vocab):
    pre = build(vocab, "[STRUCT:db,uncased,no_punctuation]")
    out = pre([["Atlanta", "5,457,831"], ["X.Y", "Z"]], ctx("valid"))
    assert vocab.decode(ids(out)) == "atlanta : 5457831 | xy : z"


@pytest.mark.parametrize("value, message", [
    (42, "expected a table"), ({"rows": []}, "exactly the keys 'header' and 'rows'"),
    ([["a"], 7], "row 1 is a int"), ([["a", ["nested"]]], "cell expects a string"),
])
def test_struct_rejects_malformed_tables(vocab, value, message):
    with pytest.raises(ValueError, match=message):
        build(vocab, "[STRUCT:db]")(value, ctx("valid"))


# ---------------------------------------------------------------------------------------------- phone


def test_arpabet_strings_map_to_phone_ids(vocab):
    pre = build(vocab, "[PHONE:p]")
    out = ids(pre("HH AH0 L OW1 | W ER1 L D", ctx("valid")))
    assert out == [vocab.phone_id(p) for p in "HH AH0 L OW1 | W ER1 L D".split()]
    assert pre.postprocess(out + [vocab.eos]) == "HH AH0 L OW1 | W ER1 L D"


def test_text_is_pronounced_with_cmudict_and_a_letter_fallback(vocab):
    assert cmu_lexicon()["hello"] == ("HH", "AH0", "L", "OW1")
    assert text_to_phones("Hello, world!") == ["HH", "AH0", "L", "OW1", "|", "W", "ER1", "L", "D"]
    assert "zblorptang" not in cmu_lexicon()
    assert letter_phones("zblorptang") == ["Z", "B", "L", "AA1", "R", "P", "T", "AE1", "NG"]
    assert letter_phones("shell") == ["SH", "EH1", "L"]  # digraph, doubled consonant sounds once
    assert text_to_phones("4 zblorptang") == ["F", "AO1", "R", "|", *letter_phones("zblorptang")]
    pre = build(vocab, "[PHONE:p]")
    assert pre.postprocess(ids(pre("hello world", ctx("valid")))) == "HH AH0 L OW1 | W ER1 L D"


def test_unpronounceable_text_is_an_error(vocab):
    with pytest.raises(ValueError, match="cannot pronounce"):
        build(vocab, "[PHONE:p]")("日本", ctx("valid"))


def test_phone_masking_uses_mask_token_at_train(vocab):
    pre = build(vocab, "[PHONE:p,mask_ratio=0.5]")
    text = "the quick brown fox jumps over the lazy dog"
    masked, plain = ids(pre(text, ctx("train"))), ids(pre(text, ctx("valid")))
    assert vocab.mask in masked and vocab.mask not in plain and len(masked) < len(plain)


def test_text_phone_returns_text_tokens_and_phones(vocab):
    pre = build(vocab, "[TEXT:text,preprocess=text_phone,uncased]", side="decoder")
    out = pre("Hello World", ctx("valid"))
    assert out["tokens"].tolist() == vocab.encode_piece("hello world")
    assert out["phones"].tolist() == [vocab.phone_id(p) for p in text_to_phones("hello world")]
    assert pre.postprocess(out["tokens"].tolist()) == "hello world"


# ---------------------------------------------------------------------------------------------- category


def test_category_label_round_trips_and_rejects_lists(vocab):
    pre = build(vocab, "[CATEGORY:c,closed_set]", side="decoder")
    out = ids(pre("entailment", ctx("valid")))
    assert out == vocab.encode_piece("entailment") and pre.postprocess(out) == "entailment"
    assert ids(pre(3, ctx("valid"))) == vocab.encode_piece("3")
    with pytest.raises(ValueError, match="one label"):
        pre(["a", "b"], ctx("valid"))


# ---------------------------------------------------------------------------------------------- box


def box_ctx(**sizes) -> SampleContext:
    return ctx("valid", image_sizes=sizes)


def test_box_value_forms_agree():
    expected = (1.0, 2.0, 30.5, 40.0)
    for value in ("1,2,30.5,40", " 1 2 30.5 40 ", [1, 2, 30.5, 40], (1, 2, 30.5, 40),
                  {"x0": 1, "y0": 2, "x1": 30.5, "y1": 40}, torch.tensor([1, 2, 30.5, 40]), np.array([1, 2, 30.5, 40])):
        assert parse_box(value) == expected


def test_box_round_trip_is_within_one_bin(vocab):
    pre = build(vocab, "[BOX:b]", side="decoder")
    rng = np.random.default_rng(0)
    for width, height in [(640, 480), (33, 1000), (1, 1)]:
        sizes = {"img": (width, height)}
        for _ in range(50):
            x0, x1 = sorted(rng.uniform(0, width, 2))
            y0, y1 = sorted(rng.uniform(0, height, 2))
            tokens = ids(pre([x0, y0, x1, y1], box_ctx(**sizes)))
            assert all(t in vocab.range("bin") for t in tokens) and len(tokens) == 4
            back = pre.postprocess(tokens + [vocab.eos], None, sizes)
            limits = (width, height, width, height)
            for got, want, size in zip(back, (x0, y0, x1, y1), limits):
                assert abs(got - want) <= size / 99


def test_box_frame_follows_crop_and_flip(vocab):
    pre = build(vocab, "[BOX:b]", side="decoder")
    geometry = ImageGeometry(200, 100, crop_box=(100, 0, 200, 100), flipped=True)
    tokens = ids(pre("100,0,150,100", box_ctx(img=geometry)))
    assert tokens == [vocab.bin_id(b) for b in (50, 0, 99, 99)]  # left half of the crop, mirrored to the right
    assert pre.postprocess(tokens, None, {"img": geometry}) == pytest.approx([100, 0, 150, 100], abs=1)


def test_box_frame_choice_size_attr_named_image_and_normalised(vocab):
    assert ids(build(vocab, "[BOX:b,size=200,100]", side="decoder")("0,0,100,50", box_ctx())) == \
        [vocab.bin_id(b) for b in (0, 0, 50, 50)]  # round(49.5) = 50: halves round to even
    assert ids(build(vocab, "[BOX:b]", side="decoder")([0, 0.5, 1, 1], box_ctx())) == \
        [vocab.bin_id(b) for b in (0, 50, 99, 99)]
    two = {"a": (100, 100), "b": (10, 10)}
    with pytest.raises(ValueError, match="several encoder images"):
        build(vocab, "[BOX:b]", side="decoder")("0,0,5,5", box_ctx(**two))
    named = Instruction.parse("[IMAGE:a] [IMAGE:b] -> [BOX:box,image=b]").decoder[0]
    pre = build_preprocessor("box", named, vocab, None)
    assert ids(pre("0,0,10,10", box_ctx(**two))) == [vocab.bin_id(b) for b in (0, 0, 99, 99)]


@pytest.mark.parametrize("value, sizes, message", [
    ("1,2,3", {"img": (10, 10)}, "has 3 numbers; expected 4 numbers x0,y0,x1,y1"),
    ("a,b,c,d", {"img": (10, 10)}, "not numeric"),
    ([1, 2, True, 4], {"img": (10, 10)}, "not numeric"),
    ("5,5,2,8", {"img": (10, 10)}, "x1 < x0"),
    ([0, 0, float("nan"), 5], {"img": (10, 10)}, "NaN"),
    ("0,0,12,5", {"img": (10, 10)}, "outside its 10x10 image by more than 1 pixel"),
    ("0,0,5,5", {}, "coordinates must be normalised to"),
    ({"x0": 1, "y": 2}, {"img": (10, 10)}, "keys"),
])
def test_malformed_boxes_say_what_was_expected(vocab, value, sizes, message):
    with pytest.raises(ValueError, match=message):
        build(vocab, "[BOX:b]", side="decoder")(value, box_ctx(**sizes))


def test_box_within_a_pixel_outside_is_clipped(vocab):
    pre = build(vocab, "[BOX:b]", side="decoder")
    assert ids(pre("-0.5,0,10.8,10", box_ctx(img=(10, 10)))) == [vocab.bin_id(b) for b in (0, 0, 99, 99)]


def test_box_needs_bins(vocab):
    no_bins = Vocabulary.default(num_bins=0, num_codes=0)
    with pytest.raises(ValueError, match="num_bins"):
        build(no_bins, "[BOX:b]", side="decoder")
