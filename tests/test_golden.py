"""The golden token-id table: stored ids equal recomputed ids, and the ids obey the boundary rules by
construction (so the table is checked, not just snapshotted)."""
from __future__ import annotations

import pytest
from golden import IMAGE_SIZE, encode_case, golden_vocab, load_golden

TABLE = load_golden()
CASES = {case["name"]: case for case in TABLE["cases"]}


@pytest.fixture(scope="module")
def vocab():
    return golden_vocab()


def expected(name: str) -> dict:
    return CASES[name]["expected"]


def test_table_was_made_with_this_vocabulary(vocab):
    assert TABLE["vocab_hash"] == vocab.hash, (
        "the default tokenizer or vocabulary layout changed: check the decoded ids, then regenerate with "
        "`python tests/golden.py`")


def test_table_covers_the_design_cases():
    assert {"caption_markers", "caption_plain", "grounding", "snli_ve_prompt", "infilling_valid", "infilling_train",
            "detection_two", "detection_none", "table_to_text"} <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_recomputed_ids_equal_the_table(name, vocab):
    assert encode_case(CASES[name], vocab) == CASES[name]["expected"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_group_is_wrapped_once_and_the_decoder_is_shifted(name, vocab):
    ids = expected(name)
    for group in ids["encoder_text_groups"]:
        assert group[0] == vocab.bos and group[-1] == vocab.eos
        assert vocab.bos not in group[1:-1] and vocab.eos not in group[1:-1]
    decoder = ids["decoder_tokens"]
    assert decoder[0] == vocab.bos and decoder[-1] == vocab.eos and vocab.eos not in decoder[1:-1]
    assert ids["prev_output_tokens"] == decoder[:-1]
    assert ids["target"][-1] == vocab.eos and len(ids["target"]) == len(decoder) - 1


def test_markers_change_nothing():
    with_markers, plain = expected("caption_markers"), expected("caption_plain")
    assert with_markers == plain
    assert with_markers["encoder_modalities"] == ["IMAGE", "TEXT"]


def test_caption_decodes_to_the_row(vocab):
    ids = expected("caption_plain")
    assert vocab.decode(ids["encoder_text_groups"][0]) == "what does the image describe?"
    assert vocab.decode(ids["target"]) == CASES["caption_plain"]["row"]["cap"]
    assert ids["prefix_length"] == 0 and ids["ntokens"] == len(ids["target"])


def test_grounding_bins_quantise_the_box_in_pixels(vocab):
    ids, row = expected("grounding"), CASES["grounding"]["row"]
    width, height = IMAGE_SIZE
    num_bins = len(vocab.range("bin"))
    coords = [float(c) for c in row["patch_boxes"].split(",")]
    bins = [round(c / size * (num_bins - 1)) for c, size in zip(coords, (width, height, width, height))]
    assert ids["target"] == [vocab.bin_id(b) for b in bins] + [vocab.eos]
    assert ids["constraints"] == [[i, "bin"] for i in range(4)]
    assert vocab.decode(ids["encoder_text_groups"][0]) == 'which region does the text " hand " describe?'


def test_snli_prompt_is_a_forced_prefix_and_the_label_is_trie_constrained(vocab):
    ids, case = expected("snli_ve_prompt"), CASES["snli_ve_prompt"]
    prefix = ids["target"][: ids["prefix_length"]]
    row = case["row"]
    assert vocab.decode(prefix) == f'can image and text1 " {row["hyp"]} " imply text2 " {row["cap"]} "?'
    label = ids["target"][ids["prefix_length"]:]
    assert vocab.decode(label) == row["label"] and ids["ntokens"] == len(label)
    answer_starts = sorted(vocab.encode_piece(answer)[0] for answer in case["answers"])
    assert ids["constraints"][0] == [ids["prefix_length"], answer_starts]
    assert ids["constraints"][-1] == [len(ids["target"]) - 1, [vocab.eos]]


def test_infilling_masks_only_at_train(vocab):
    valid, train = expected("infilling_valid"), expected("infilling_train")
    sentence = vocab.encode_piece(CASES["infilling_valid"]["row"]["sentence"])
    assert valid["decoder_tokens"] == train["decoder_tokens"] == [vocab.bos, *sentence, vocab.eos]
    assert vocab.mask not in valid["encoder_text_groups"][0]
    masked = train["encoder_text_groups"][0]
    assert vocab.mask in masked
    kept = len(masked) - masked.count(vocab.mask) - (len(valid["encoder_text_groups"][0]) - len(sentence))
    assert len(sentence) - kept == round(len(sentence) * 0.3)


def test_detection_repeats_box_then_label_and_ends_with_eos(vocab):
    two, none = expected("detection_two"), expected("detection_none")
    assert none["decoder_tokens"] == [vocab.bos, vocab.eos] and none["constraints"] == []
    bins = vocab.range("bin")
    target = two["target"]
    assert all(t in bins for t in target[0:4] + target[5:9])
    assert vocab.decode([target[4]]) == "cat" and vocab.decode([target[9]]) == "dog"
    assert [position for position, _ in two["constraints"]] == [1, 2, 3, 6, 7, 8]  # each object's first bin keeps the full softmax


def test_table_is_linearised_uncased(vocab):
    text = vocab.decode(expected("table_to_text")["encoder_text_groups"][0])
    assert text == ('structured knowledge: " atlanta : official_population : 5,457,831 | [tablecontext] : '
                    'metropolitan_area : atlanta | 5,457,831 : year : 2012 " . how to describe the tripleset ?')
