"""Every malformed instruction is an InstructionError with a reason and a caret at the right column."""
import pickle

import pytest

from ofasys_fs.errors import PluginError
from ofasys_fs.instruction import BindError, Instruction, InstructionError, parse_templates
from ofasys_fs.schemas import Attr, register_attr_schema

# (instruction, substring of the message, caret column: an int, or a substring whose first index is the column)
MALFORMED = [
    ("[image:x] hi -> [TEXT:y]", 'unknown modality \'image\'. Did you mean "IMAGE"?', "image"),
    ("[BOUNDING_BOX:x] -> [TEXT:y]", "unknown modality 'BOUNDING_BOX'", "BOUNDING"),
    ("[Text:x] -> [TEXT:y]", 'Did you mean "TEXT"?', "Text"),
    ("[:x] -> [TEXT:y]", "slot without a modality", ":x"),
    ("[] -> [TEXT:y]", "empty slot", 0),
    ("a [ ] -> [TEXT:y]", "empty slot", 2),
    ("[TEXT:x,mask_ratio=1.7] -> [TEXT:y]", "mask_ratio=1.7 is out of range: expected 0.0 <= value < 1.0", "1.7"),
    ("[TEXT:x,mask_ratio=1] -> [TEXT:y]", "out of range", "1]"),
    ("[TEXT:x,noise_ratio=-0.1] -> [TEXT:y]", "out of range", "-0.1"),
    ("[TEXT:x,mask_ratio=nan] -> [TEXT:y]", "out of range", "nan"),
    ("[TEXT:x,mask_ratio=abc] -> [TEXT:y]", "mask_ratio expects a number, got 'abc'", "abc"),
    ("[TEXT:x,max_length=abc] -> [TEXT:y]", "max_length expects an integer, got 'abc'", "abc"),
    ("[TEXT:x,max_length=1.5] -> [TEXT:y]", "expects an integer", "1.5"),
    ("[TEXT:x,max_length=0] -> [TEXT:y]", "expected 1 <= value", "0]"),
    ("[TEXT:x,max_length=5,6] -> [TEXT:y]", "got '5,6'", "5,6"),
    ("[TEXT:x,uncased=1] -> [TEXT:y]", "uncased is a flag and takes no value", "1]"),
    ("[TEXT:x,max_length] -> [TEXT:y]", "max_length needs a value", "max_length"),
    ("[TEXT:x,max_length=] -> [TEXT:y]", "max_length needs a value", "max_length"),
    ("[TEXT:x] -> [TEXT:y,mask_ratio=0.2]", "'mask_ratio' is allowed on the encoder side only", "mask_ratio"),
    ("[TEXT:x,no_loss] -> [TEXT:y]", "'no_loss' is allowed on the decoder side only", "no_loss"),
    ("[TEXT:x,closed_set] -> [TEXT:y]", "'closed_set' is allowed on the decoder side only", "closed_set"),
    ("[TEXT:x,uncased,uncased] -> [TEXT:y]", "duplicate attribute 'uncased'", "uncased]"),
    ("[TEXT:x] -> [TEXT:y,unased]", 'unknown attribute \'unased\' for a TEXT slot with preprocess \'text\'. '
                                    'Did you mean "uncased"?', "unased"),
    ("[IMAGE:x,uncased] -> [TEXT:y]", "unknown attribute 'uncased' for a IMAGE slot", "uncased"),
    ("[TEXT:x,] -> [TEXT:y]", "empty attribute", 8),
    ("[TEXT:x,,uncased] -> [TEXT:y]", "empty attribute", 8),
    ("[TEXT:x,foo bar] -> [TEXT:y]", "bad attribute 'foo bar'", "foo"),
    ("[TEXT:x,=3] -> [TEXT:y]", "bad attribute '=3'", "=3"),
    ("[TEXT:x] hello [TEXT:y]", "no '->'", 23),
    ("[TEXT:x] -> [TEXT:y] -> [TEXT:z]", "several '->'", 21),
    ("[TEXT:x -> [TEXT:y]", "unclosed '['", 0),
    ("[TEXT:x] -> [TEXT:y", "unclosed '['", 12),
    ("[TEXT:x] ] -> [TEXT:y]", "stray ']'", 9),
    ("[TEXT:x] -> ( [TEXT:o.y]", "unclosed '('", "("),
    ("[TEXT:x] -> [TEXT:o.y] )*", "stray ')'", ")"),
    ("[TEXT:x] -> [TEXT:y] )", "stray ')'", ")"),
    ("[TEXT:x] -> ( [TEXT:o.y] ) ", "closes with ')*'", ")"),
    ("[TEXT:1x] -> [TEXT:y]", "bad column name '1x'", "1x"),
    ("[TEXT:a..b] -> [TEXT:y]", "bad column name 'a..b'", "a..b"),
    ("[TEXT:a-b] -> [TEXT:y]", "bad column name 'a-b'", "a-b"),
    ("[TEXT:my col] -> [TEXT:y]", "bad column name 'my col'", "my col"),
    ("[TEXT:] -> [TEXT:y]", "empty column name after ':'", 6),
    ("[TEXT] -> [TEXT:y]", "the encoder slot [TEXT] needs a column name", 1),
    ("[IMAGE] describe -> [TEXT:y]", "the encoder slot [IMAGE] needs a column name", 1),
    ("[TEXT:x] -> [TEXT]", "the decoder slot [TEXT] needs a column name", 13),
    ("[TEXT:x] ->", "the decoder side is empty", 11),
    ("[TEXT:x] ->   ", "the decoder side is empty", 11),
    ("[TEXT:x] -> hello", "the decoder side has only plain text", "hello"),
    ("[TEXT:x] -> [TEXT:y] [IMAGE]", "mixes an IMAGE output slot with text-like pieces", 12),
    ("[TEXT:x] -> the image: [IMAGE:i]", "mixes an IMAGE output slot", "the"),
    ("[TEXT:x] -> [MOTION:m] [TEXT:y]", "mixes an MOTION output slot", "[TEXT:y]"),
    ("[TEXT:x] -> [IMAGE] [AUDIO]", "two output slots", "[AUDIO"),
    ("[TEXT:x] -> [VIDEO:v]", "VIDEO cannot be generated", "VIDEO"),
    ("a <BOS> b [TEXT:x] -> [TEXT:y]", "marker <BOS> inside a text group", "<BOS>"),
    ("[TEXT:x] <EOS> hello -> [TEXT:y]", "marker <EOS> inside a text group", "<EOS>"),
    ("[IMAGE:i] <BOS> [IMAGE:j] hi -> [TEXT:y]", "<BOS> must be followed by text", "<BOS>"),
    ("<EOS> [TEXT:x] -> [TEXT:y]", "<EOS> must follow text", 0),
    ("[TEXT:x] <EOS> <EOS> -> [TEXT:y]", "repeated marker <EOS>", 15),
    ("<bos> [TEXT:x] -> [TEXT:y]", 'unknown marker <bos>. Did you mean "<BOS>"?', 0),
    ("[TEXT:x] -> <BOS> [IMAGE]", "<BOS> must be followed by text", "<BOS>"),
    ("[TEXT:x] -> <BOS> <EOS>", "<BOS> must be followed by text", "<BOS>"),
    ("( [TEXT:x] )* -> [TEXT:y]", "allowed on the decoder side only", 0),
    ("what (is) this [TEXT:x] -> [TEXT:y]", "write a literal '(' as '\\('", "("),
    ("[TEXT:x] -> ( ( [TEXT:o.y] )* )*", "nested repetition groups", 14),
    ("[TEXT:x] -> ( [TEXT:o.y] )* ( [TEXT:o.z] )*", "only one repetition group", 28),
    ("[TEXT:x] -> ( hello )*", "empty repetition group", "("),
    ("[TEXT:x] -> answer: ( )*", "empty repetition group", "("),
    ("[TEXT:x,max_repeat=3] -> [TEXT:y]", "max_repeat applies only to slots inside a repetition group", "max_repeat"),
    ("[TEXT:x] -> [TEXT:y,max_repeat=3]", "max_repeat applies only", "max_repeat"),
    ("[TEXT:x] -> ( [TEXT:o.y,max_repeat=0] )*", "out of range", "0]"),
    ("[TEXT:x] -> ( [BOX:o.box,max_repeat=2] [TEXT:o.label,max_repeat=3] )*", "contradicts max_repeat=2", "3]"),
    ("[TEXT:x] -> ( [BOX:objs.box] [TEXT:other.label] )*", "expected [TEXT:objs.FIELD]", "[TEXT:other"),
    ("[TEXT:x] -> ( [TEXT:y] )*", "LIST.FIELD", "[TEXT:y]"),
    ("[TEXT:x] -> ( [TEXT:o.y] <EOS> )*", "marker <EOS> inside a repetition group", "<EOS>"),
    ("[TEXT:x,preprocess=txt] -> [TEXT:y]", 'unknown preprocess "txt". Did you mean "text"?', "txt"),
    ("[TEXT:x,adaptor=txt] -> [TEXT:y]", 'unknown adaptor \'txt\'. Did you mean "text"?', "txt"),
    ("[IMAGE:x,preprocess=text] -> [TEXT:y]", "preprocess 'text' handles TEXT slots, not IMAGE", "text]"),
    ("[AUDIO:x,preprocess=audio_mel] -> [TEXT:y]", "works on the decoder side only", "audio_mel"),
    ("[TEXT:x] -> [AUDIO,preprocess=audio]", "works on the encoder side only", "audio]"),
    ("[TEXT:x,preprocess] -> [TEXT:y]", "preprocess needs a value", "preprocess"),
    ("[TEXT:x,adaptor] -> [TEXT:y]", "adaptor needs a value", "adaptor"),
    ("[IMAGE:img] -> [BOX:b,image=im]", "no encoder IMAGE slot reads column 'im'", "im]"),
    ("[TEXT:x] -> [BOX:b,size=640]", "size=640 is malformed", "640"),
    ("[AUDIO:a,n_frames_per_step=0] -> [TEXT:y]", "out of range", "0]"),
    ("[VIDEO:v,num_frames=x] -> [TEXT:y]", "num_frames expects an integer", "x]"),
    ("[TEXT:x,drop_ratio=1.5] -> [IMAGE]", "out of range", "1.5"),
]


def caret_column(text: str, where) -> int:
    return where if isinstance(where, int) else text.index(where)


@pytest.mark.parametrize("text,message,where", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_instruction_names_reason_and_column(text, message, where):
    with pytest.raises(InstructionError) as info:
        Instruction.parse(text)
    err = info.value
    assert message in err.reason
    assert err.column == caret_column(text, where)
    assert err.instruction == text


def test_error_quotes_instruction_with_caret_under_column():
    text = "[TEXT:x,mask_ratio=1.7] -> [TEXT:y]"
    with pytest.raises(ValueError) as info:  # InstructionError is a ValueError
        Instruction.parse(text)
    lines = str(info.value).splitlines()
    quoted = next(i for i, line in enumerate(lines) if line.strip() == text)
    caret_line = lines[quoted + 1]
    assert caret_line.strip() == "^"
    assert caret_line.index("^") - lines[quoted].index(text[0]) == text.index("1.7")


def test_caret_stays_aligned_with_tabs_in_the_instruction():
    text = "[TEXT:x]\t->\t[TEXT:y,foo]"
    with pytest.raises(InstructionError) as info:
        Instruction.parse(text)
    quoted, caret = str(info.value).splitlines()[-2:]
    assert caret.index("^") == quoted.index("foo")


def test_instruction_error_survives_pickling():
    with pytest.raises(InstructionError) as info:
        Instruction.parse("[TEXT:x] -> [TEXT:y,unased]")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.instruction, copy.column, copy.reason) == (info.value.instruction, info.value.column,
                                                            info.value.reason)


def test_parse_rejects_non_strings():
    with pytest.raises(TypeError, match="an instruction is a string"):
        Instruction.parse(["[TEXT:x] -> [TEXT:y]"])


CAPTION = "[IMAGE:img] what does the image describe? -> [TEXT:cap]"


def test_missing_encoder_column_names_column_and_row_keys():
    with pytest.raises(BindError) as info:
        Instruction.parse(CAPTION).bind({"image": "a.jpg", "cap": "a cat"})
    assert "column 'img'" in info.value.reason and "['cap', 'image']" in info.value.reason
    assert info.value.column == 0 and CAPTION in str(info.value)


def test_none_encoder_value_is_an_error():
    with pytest.raises(BindError, match="column 'img' .* is None"):
        Instruction.parse(CAPTION).bind({"img": None, "cap": "x"}, split="inference")


@pytest.mark.parametrize("split", ["train", "valid"])
def test_missing_target_is_an_error_when_training(split):
    with pytest.raises(BindError) as info:
        Instruction.parse(CAPTION).bind({"img": "a.jpg"}, split=split)
    assert "column 'cap'" in info.value.reason and "test/inference" in info.value.reason
    assert info.value.column == CAPTION.index("[TEXT:cap]")


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        Instruction.parse(CAPTION).bind({"img": "a.jpg", "cap": "x"}, split="validation")


def test_nameless_output_slot_has_no_training_target():
    text = "[TEXT:text] -> [IMAGE,preprocess=image_vqgan]"
    with pytest.raises(BindError, match="has no column name"):
        Instruction.parse(text).bind({"text": "a park"}, split="train")


REPEAT = "[IMAGE:img] detect: -> ( [BOX:objs.box] [TEXT:objs.label] )*"


@pytest.mark.parametrize("objs,message", [
    ("cat", "must be a list of dicts"),
    ([{"box": [0, 0, 1, 1]}], "item 0 of column 'objs' has no key 'label'"),
    ([{"box": [0, 0, 1, 1], "label": "a"}, "b"], "item 1 of column 'objs' must be a dict, got str"),
    ({"box": [[0, 0, 1, 1]], "label": []}, "must be a list of dicts"),
])
def test_bad_repetition_list_is_a_bind_error(objs, message):
    with pytest.raises(BindError, match=message):
        Instruction.parse(REPEAT).bind({"img": "a.jpg", "objs": objs})


def test_missing_repetition_list_is_an_error_when_training():
    with pytest.raises(BindError, match=r"column 'objs' needed by the decoder slot \[BOX:objs.box\] is missing"):
        Instruction.parse("[IMAGE:img] -> ( object [BOX:objs.box] )*").bind({"img": "a.jpg"})


def test_templates_with_different_slots_quote_both():
    first, second = "[IMAGE:img] caption: -> [TEXT:cap]", "[IMAGE:photo] caption: -> [TEXT:cap]"
    with pytest.raises(InstructionError) as info:
        parse_templates([first, second])
    assert info.value.instruction == second and repr(first) in info.value.reason


def test_templates_with_different_text_groups_are_rejected():
    with pytest.raises(InstructionError, match="share their slots and text groups"):
        parse_templates("[IMAGE:img] what is it? -> [TEXT:cap] ||| look: [IMAGE:img] what is it? -> [TEXT:cap]")


@pytest.mark.parametrize("templates", ["[TEXT:a] -> [TEXT:b] |||  ", [], ["[TEXT:a] -> [TEXT:b]", ""]])
def test_empty_templates_are_rejected(templates):
    with pytest.raises(ValueError):
        parse_templates(templates)


@pytest.mark.parametrize("kwargs,message", [
    (dict(preprocess_name="text", modalities={"TEXT"}, attrs={}), "already registered"),
    (dict(preprocess_name="errors_bad_modality", modalities={"TXT"}, attrs={}), "modalities must be"),
    (dict(preprocess_name="errors_bad_type", modalities={"TEXT"}, attrs={"k": Attr(list)}), "must be an Attr of type"),
    (dict(preprocess_name="errors_common", modalities={"TEXT"}, attrs={"adaptor": Attr(str)}), "common to every slot"),
    (dict(preprocess_name="errors_bad_key", modalities={"TEXT"}, attrs={"a-b": Attr(int)}), "not an identifier"),
    (dict(preprocess_name="errors_bad_side", modalities={"TEXT"}, attrs={"k": Attr(int, sides=("enc",))}),
     "sides must be"),
])
def test_bad_schema_registration_is_rejected(kwargs, message):
    with pytest.raises(PluginError, match=message):
        register_attr_schema(**kwargs)
