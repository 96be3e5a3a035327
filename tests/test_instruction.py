"""Valid instructions: the seed README's, groups and markers, escapes, names, repetition, templates, schemas."""
import pickle

import pytest

from ofasys_fs.contracts import Adaptor
from ofasys_fs.errors import PluginError
from ofasys_fs.instruction import (
    Attr,
    BoundSlot,
    Instruction,
    InstructionError,
    get_attr_schema,
    parse_templates,
    register_attr_schema,
)
from ofasys_fs.registry import register_adaptor

DATABASE = [["Atlanta", "OFFICIAL_POPULATION", "5,457,831"], ["[TABLECONTEXT]", "[TITLE]", "List of areas"]]
SQL_SCHEMA = [["stadium", "stadium_id , location , name"], ["singer_in_concert", "concert_id , singer_id"]]

# Every instruction of the seed README, with the data shown next to it (inference rows have no target).
SEED = [
    ("[IMAGE:image_url] what does the image describe? -> [TEXT:caption]",
     {"image_url": "https://example.com/card.png", "caption": "a pokemon card"}, "train"),
    ('what is the complete text of " [TEXT:sentence,mask_ratio=0.3] "? -> [TEXT:sentence]',
     {"sentence": "the book was read by me .", "label": 1, "idx": 0}, "train"),
    ("[IMAGE:img] <BOS> what does the image describe? <EOS> -> <BOS> [TEXT:cap] <EOS>",
     {"img": "./COCO_val2014_000000222628.jpg"}, "inference"),
    ('[IMAGE:img] <BOS> which region does the text " [TEXT:cap] " describe? <EOS> -> [BOX:patch_boxes,add_bos,add_eos]',
     {"img": "https://www.2008php.com/x.jpg", "cap": "hand"}, "inference"),
    ('<BOS> what is the summary of article " [TEXT:src] "? <EOS> -> <BOS> [TEXT:tgt] <EOS>',
     {"src": "poland 's main opposition party tuesday endorsed president lech walesa ."}, "inference"),
    ('<BOS> structured knowledge: " [STRUCT:database,uncased] "  . how to describe the tripleset ? <EOS> -> '
     '<BOS> [TEXT:tgt] <EOS>', {"database": DATABASE}, "inference"),
    ('<BOS> " [TEXT:src] " ; structured knowledge: " [STRUCT:database,max_length=876] " . generating sql code. '
     '<EOS> -> <BOS> [TEXT:tgt] <EOS>',
     {"src": "What are all distinct countries where singers above age 20 are from?", "database": SQL_SCHEMA},
     "inference"),
    ("[VIDEO:video] <BOS> what does the video describe? <EOS> -> <BOS> [TEXT:cap] <EOS>",
     {"video": "./video7021.mp4"}, "inference"),
    ("[AUDIO:wav] <BOS> what is the text corresponding to the voice? <EOS> -> "
     "[TEXT:text,preprocess=text_phone,add_bos,add_eos]", {"wav": "./1272-128104-0001.flac"}, "inference"),
    ('what is the complete image? caption: [TEXT:text]"? -> [IMAGE,preprocess=image_vqgan,adaptor=image_vqgan]',
     {"text": "a city with tall buildings and a large green park."}, "inference"),
]


@pytest.mark.parametrize("text,row,split", SEED, ids=[s[0][:40] for s in SEED])
def test_seed_instructions_parse_and_bind(text, row, split):
    instruction = Instruction.parse(text)
    bound = instruction.bind(row, split=split)
    for piece in bound.encoder:
        expected = piece.slot.text if piece.slot.modality == "PLAIN" else row[piece.slot.name]
        assert piece.value == expected
    targets = [p for p in bound.decoder if p.slot.modality != "PLAIN"]
    assert targets and all(p.value == row.get(p.slot.name) for p in targets)
    assert instruction.text == text


def test_seed_caption_pieces_groups_and_defaults():
    instruction = Instruction.parse(SEED[2][0])
    image, prompt = instruction.encoder
    assert (image.modality, image.name, image.group, image.preprocess, image.adaptor) == ("IMAGE", "img", None,
                                                                                          "image", None)
    assert (prompt.modality, prompt.text, prompt.group, prompt.no_loss) == ("PLAIN", "what does the image describe?",
                                                                            0, False)
    (target,) = instruction.decoder
    assert (target.name, target.group, target.side, target.text_like, target.no_loss) == ("cap", 0, "decoder",
                                                                                          True, False)
    assert instruction.output_modality == "TEXT"
    assert instruction.columns() == {"img", "cap"}


@pytest.mark.parametrize("with_markers,without", [
    (SEED[2][0], "[IMAGE:img] what does the image describe? -> [TEXT:cap]"),
    (SEED[4][0], 'what is the summary of article " [TEXT:src] "? -> [TEXT:tgt]'),
    (SEED[3][0],
     '[IMAGE:img] which region does the text " [TEXT:cap] " describe? -> [BOX:patch_boxes,add_bos,add_eos]'),
])
def test_markers_at_group_edges_change_nothing(with_markers, without):
    marked, plain = Instruction.parse(with_markers), Instruction.parse(without)
    assert marked.encoder == plain.encoder and marked.decoder == plain.decoder
    assert marked.signature() == plain.signature()


def test_groups_are_runs_of_text_like_pieces():
    instruction = Instruction.parse(
        "<BOS> look at [IMAGE:a] <BOS> then [TEXT:t] [BOX:b] <EOS> [IMAGE:c] [PHONE:p] [STRUCT:s] [CATEGORY:k] "
        "[AUDIO:w] [VIDEO:v] end -> [TEXT:y]")
    groups = [(piece.modality, piece.group) for piece in instruction.encoder]
    assert groups == [("PLAIN", 0), ("IMAGE", None), ("PLAIN", 1), ("TEXT", 1), ("BOX", 1), ("IMAGE", None),
                      ("PHONE", 2), ("STRUCT", 2), ("CATEGORY", 2), ("AUDIO", None), ("VIDEO", None),
                      ("PLAIN", 3)]


def test_decoder_text_side_is_one_group_with_prompt_without_loss():
    instruction = Instruction.parse("[IMAGE:i] [TEXT:h] -> does the image entail the text? [TEXT:label,closed_set]")
    prompt, label = instruction.decoder
    assert (prompt.group, label.group) == (0, 0)
    assert prompt.no_loss and not label.no_loss and label.attrs["closed_set"] is True


def test_plain_text_whitespace_is_collapsed_and_blank_pieces_vanish():
    instruction = Instruction.parse("  what \t does   it\nshow?  [TEXT:a]   [TEXT:b]  -> [TEXT:c]")
    assert [p.text for p in instruction.encoder] == ["what does it show?", None, None]


def test_escapes_give_literal_characters():
    instruction = Instruction.parse(r"\[x\] \(y\) a \-> b \\ [TEXT:t] -> [TEXT:u] \(")
    assert instruction.encoder[0].text == "[x] (y) a -> b \\"
    assert instruction.decoder[1].text == "("


def test_unknown_backslash_sequence_stays_literal():
    assert Instruction.parse(r"C:\data [TEXT:t] -> [TEXT:u]").encoder[0].text == r"C:\data"


def test_arrow_and_brackets_inside_an_attribute_value_belong_to_the_slot():
    register_attr_schema("test_instruction_free_text", {"TEXT"}, {"note": Attr(str, "")}, adaptor="text")
    instruction = Instruction.parse("[TEXT:x,preprocess=test_instruction_free_text,note=a->b (c)] -> [TEXT:y]")
    assert instruction.encoder[0].attrs["note"] == "a->b (c)"


def test_dotted_names_read_flattened_keys_first_then_nested_dicts():
    instruction = Instruction.parse("[TEXT:meta.caption] [TEXT:a.b.c] -> [TEXT:answers.text]")
    row = {"meta.caption": "flat", "meta": {"caption": "nested"}, "a": {"b.c": 1}, "answers": {"text": "yes"}}
    bound = instruction.bind(row)
    assert [p.value for p in bound.encoder + bound.decoder] == ["flat", 1, "yes"]
    assert instruction.columns() == {"meta.caption", "a.b.c", "answers.text"}


def test_one_column_may_feed_several_slots():
    bound = Instruction.parse(SEED[1][0]).bind({"sentence": "hello world"})
    sources = [p for p in bound.encoder + bound.decoder if p.slot.name == "sentence"]
    assert [p.value for p in sources] == ["hello world", "hello world"]
    assert [p.slot.attrs["mask_ratio"] for p in sources] == [0.3, 0.0]


def test_extra_row_keys_are_fine_and_missing_target_is_none_at_test():
    bound = Instruction.parse(SEED[0][0]).bind({"image_url": "x.png", "id": 7, "refs": ["a"]}, split="test")
    assert bound.decoder == [BoundSlot(bound.instruction.decoder[0], None)] and bound.split == "test"


DETECTION = "[IMAGE:img] what are the objects? -> ( [BOX:objs.box] [TEXT:objs.label] )*"
OBJECTS = [{"box": [1, 2, 3, 4], "label": "cat"}, {"box": [5, 6, 7, 8], "label": "dog", "score": 0.5},
           {"box": [0, 0, 9, 9], "label": "sofa"}]


def test_repetition_expands_in_list_order():
    instruction = Instruction.parse(DETECTION)
    assert (instruction.repeat.list_name, instruction.repeat.max_repeat) == ("objs", None)
    assert instruction.columns() == {"img", "objs"}
    bound = instruction.bind({"img": "a.jpg", "objs": OBJECTS})
    assert [(p.slot.modality, p.value, p.repeat_index) for p in bound.decoder] == [
        ("BOX", [1, 2, 3, 4], 0), ("TEXT", "cat", 0), ("BOX", [5, 6, 7, 8], 1), ("TEXT", "dog", 1),
        ("BOX", [0, 0, 9, 9], 2), ("TEXT", "sofa", 2)]


def test_repetition_is_capped_by_max_repeat_and_keeps_surrounding_pieces():
    instruction = Instruction.parse(
        "[IMAGE:img] -> objects: ( [BOX:objs.box,max_repeat=2] is [TEXT:objs.label] ; )* done")
    assert instruction.repeat.max_repeat == 2 and "max_repeat" not in instruction.repeat.slots[0].attrs
    values = [p.value for p in instruction.bind({"img": "a.jpg", "objs": OBJECTS}).decoder]
    assert values == ["objects:", [1, 2, 3, 4], "is", "cat", ";", [5, 6, 7, 8], "is", "dog", ";", "done"]


def test_repetition_accepts_equal_max_repeat_on_several_slots():
    instruction = Instruction.parse("[IMAGE:i] -> ( [BOX:o.box,max_repeat=1] [TEXT:o.label,max_repeat=1] )*")
    assert instruction.repeat.max_repeat == 1


def test_empty_list_binds_nothing_and_missing_list_is_fine_at_inference():
    instruction = Instruction.parse(DETECTION)
    assert instruction.bind({"img": "a.jpg", "objs": []}).decoder == []
    assert instruction.bind({"img": "a.jpg"}, split="inference").decoder == []


def test_repetition_reads_huggingface_dict_of_lists():
    row = {"img": "a.jpg", "objs": {"box": [[1, 2, 3, 4], [5, 6, 7, 8]], "label": ["cat", "dog"]}}
    values = [p.value for p in Instruction.parse(DETECTION).bind(row).decoder]
    assert values == [[1, 2, 3, 4], "cat", [5, 6, 7, 8], "dog"]


def test_templates_from_list_and_separator_string():
    first = "[IMAGE:img] what does the image describe? -> [TEXT:cap]"
    second = "[IMAGE:img] <BOS> describe the picture. <EOS> -> a picture of [TEXT:cap,uncased]"
    from_list = parse_templates([first, second])
    from_string = parse_templates(f"{first} ||| {second}")
    assert [t.text for t in from_list] == [t.text for t in from_string] == [first, second]
    assert from_list[0].signature() == from_list[1].signature()
    assert hash(from_list[0].signature()) == hash(from_list[1].signature())


def test_schema_defaults_per_modality_and_side():
    instruction = Instruction.parse("[TEXT:t] [IMAGE:i] [AUDIO:a] [VIDEO:v] [BOX:b] [STRUCT:s] [PHONE:p] "
                                    "[CATEGORY:c] [MOTION:m] -> [AUDIO]")
    picked = [(s.modality, s.preprocess, s.adaptor) for s in instruction.encoder]
    assert picked == [("TEXT", "text", "text"), ("IMAGE", "image", None), ("AUDIO", "audio", "audio_fbank"),
                      ("VIDEO", "video", "video_frames"), ("BOX", "box", "text"), ("STRUCT", "struct", "text"),
                      ("PHONE", "phone", "text"), ("CATEGORY", "category", "text"),
                      ("MOTION", "motion_6d", "motion_6d")]
    assert (instruction.decoder[0].preprocess, instruction.decoder[0].adaptor) == ("audio_mel", "audio_mel")
    assert instruction.output_modality == "AUDIO"
    assert Instruction.parse("[TEXT:t] -> [IMAGE:img]").decoder[0].preprocess == "image_code"
    assert instruction.encoder[0].attrs == {
        "preprocess": "text", "adaptor": "text", "uncased": False, "no_punctuation": False, "max_length": None,
        "mask_ratio": 0.0, "noise_ratio": 0.0, "drop_ratio": 0.0, "no_loss": False, "closed_set": False,
        "add_bos": False, "add_eos": False, "disable_auto_boseos": False}
    assert instruction.encoder[3].attrs["num_frames"] == 8 and instruction.encoder[2].attrs["n_frames_per_step"] == 1


def test_attribute_values_are_typed_and_aliases_canonical():
    instruction = Instruction.parse(
        "[STRUCT:db,max_length=876,uncased] [IMAGE:img,mask_ratio=0.25,adaptor=image_resnet] -> "
        "[BOX:box,image=img,no_loss] [BOX:ref,size=640,480]")
    struct, image = instruction.encoder
    assert struct.attrs["max_length"] == 876 and struct.attrs["uncased"] is True
    assert image.attrs["mask_ratio"] == 0.25 and image.adaptor == "image_resnet"
    assert instruction.decoder[0].attrs["image"] == "img" and instruction.decoder[0].no_loss
    assert instruction.decoder[1].attrs["size"] == "640,480"
    output = Instruction.parse(SEED[-1][0]).decoder[0]
    assert (output.name, output.preprocess, output.adaptor, output.attrs["tokenizer"]) == (None, "image_code",
                                                                                           "image_code", None)
    assert get_attr_schema("image_vqgan").name == "image_code"


def test_text_phone_is_a_decoder_text_preprocessor():
    target = Instruction.parse(SEED[8][0]).decoder[0]
    assert (target.modality, target.preprocess, target.adaptor) == ("TEXT", "text_phone", "text")
    assert target.attrs["add_bos"] and target.attrs["add_eos"]


def test_plugin_schema_and_adaptor_become_valid_after_registration():
    text = "[TEXT:x,preprocess=test_instruction_plugin,temperature=0.5,adaptor=test_instruction_adaptor] -> [TEXT:y]"
    with pytest.raises(InstructionError, match='unknown preprocess "test_instruction_plugin"'):
        Instruction.parse(text)
    register_attr_schema("test_instruction_plugin", {"TEXT", "CATEGORY"},
                         {"temperature": Attr(float, 1.0, min=0.0, help="softmax temperature")},
                         aliases=("test_instruction_plugin_alias",), adaptor="text")
    with pytest.raises(InstructionError, match="unknown adaptor 'test_instruction_adaptor'"):
        Instruction.parse(text)

    @register_adaptor("test_instruction_adaptor")
    class PluginAdaptor(Adaptor):
        def forward(self, batch):
            raise NotImplementedError

    slot = Instruction.parse(text).encoder[0]
    assert (slot.preprocess, slot.adaptor, slot.attrs["temperature"]) == ("test_instruction_plugin",
                                                                          "test_instruction_adaptor", 0.5)
    alias = Instruction.parse("[CATEGORY:x,preprocess=test_instruction_plugin_alias] -> [TEXT:y]").encoder[0]
    assert (alias.preprocess, alias.adaptor, alias.attrs["temperature"]) == ("test_instruction_plugin", "text", 1.0)
    with pytest.raises(InstructionError, match="out of range"):
        Instruction.parse("[TEXT:x,preprocess=test_instruction_plugin,temperature=-1] -> [TEXT:y]")
    with pytest.raises(PluginError, match="unknown preprocess"):
        get_attr_schema("test_instruction_plugn")


def test_instruction_api_repr_pickle_and_hashable_slots():
    instruction = Instruction.parse("[IMAGE:img] detect: -> ( [BOX:objs.box,max_repeat=3] [TEXT:objs.label] )*")
    assert repr(instruction) == ("Instruction([IMAGE:img] 'detect:' -> ( [BOX:objs.box] [TEXT:objs.label] )* "
                                 "(max_repeat=3))")
    assert [s.name for s in instruction.encoder_slots] == ["img"]
    assert [s.name for s in instruction.decoder_slots] == ["objs.box", "objs.label"]
    copy = pickle.loads(pickle.dumps(instruction))
    assert copy.decoder == instruction.decoder and copy.repeat == instruction.repeat
    assert len({*instruction.encoder, *copy.encoder}) == 2
    assert str(Instruction.parse("[TEXT:x,uncased,max_length=5] -> [TEXT:y]").encoder[0]) == \
        "[TEXT:x,uncased,max_length=5]"
