"""The golden token-id table (docs/design.md §4): fixed instructions and rows with their exact ids.

`load_golden()` returns the stored table (tests/golden_ids.json); `encode_case(case)` recomputes one
case's ids with the current code. Parser, collation and generator tests compare against the table.
Regenerate (only after checking the decoded ids by hand) with:  python tests/golden.py
"""
from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

from PIL import Image

GOLDEN_PATH = Path(__file__).with_name("golden_ids.json")
VOCAB_CONFIG = {"num_bins": 100, "num_codes": 0}
IMAGE_SIZE = (64, 48)  # (W, H) of the image every case uses

CAPTION = "a man and woman sitting in front of a laptop computer"
TRIPLES = [["Atlanta", "OFFICIAL_POPULATION", "5,457,831"], ["[TABLECONTEXT]", "METROPOLITAN_AREA", "Atlanta"],
           ["5,457,831", "YEAR", "2012"]]
SENTENCE = ("poland 's main opposition party tuesday endorsed president lech walesa in an upcoming "
            "presidential run-off election after a reformed communist won the first round of voting .")
SNLI = ('[IMAGE:img] can image and text1 " [TEXT:hyp] " imply text2 " [TEXT:cap] "? -> can image and text1 " '
        '[TEXT:hyp,no_loss] " imply text2 " [TEXT:cap,no_loss] "? [TEXT:label,closed_set]')
INFILL = 'what is the complete text of " [TEXT:sentence,mask_ratio=0.3] "? -> [TEXT:sentence]'
DETECT = "[IMAGE:img] what are the objects in the image? -> ( [BOX:objs.box] [TEXT:objs.label] )*"


def image_uri() -> str:
    """A solid-colour PNG of IMAGE_SIZE as a data URI (rows stay plain JSON)."""
    buffer = io.BytesIO()
    Image.new("RGB", IMAGE_SIZE, (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def case_definitions() -> list[dict]:
    """The cases: name, instruction, row, split, context (seed/epoch/row_index) and answers."""
    img = image_uri()
    ctx = {"seed": 1, "epoch": 0, "row_index": 0}

    def case(name, instruction, row, split="valid", answers=None, **context):
        return {"name": name, "instruction": instruction, "row": row, "split": split, "answers": answers,
                "context": {**ctx, **context}}

    return [
        case("caption_markers", "[IMAGE:img] <BOS> what does the image describe? <EOS> -> <BOS> [TEXT:cap] <EOS>",
             {"img": img, "cap": CAPTION}),
        case("caption_plain", "[IMAGE:img] what does the image describe? -> [TEXT:cap]", {"img": img, "cap": CAPTION}),
        case("grounding", '[IMAGE:img] <BOS> which region does the text " [TEXT:cap] " describe? <EOS> -> '
                          "[BOX:patch_boxes,add_bos,add_eos]", {"img": img, "cap": "hand", "patch_boxes": "8,6,40,30"}),
        case("snli_ve_prompt", SNLI, {"img": img, "hyp": "two people use a computer", "cap": CAPTION, "label": "yes"},
             answers=["yes", "no", "maybe"]),
        case("infilling_valid", INFILL, {"sentence": SENTENCE}),
        case("infilling_train", INFILL, {"sentence": SENTENCE}, split="train", seed=7, epoch=2, row_index=5),
        case("detection_two", DETECT, {"img": img, "objs": [{"box": [2, 4, 30, 40], "label": "cat"},
                                                            {"box": "33.5,0,64,47.2", "label": "dog"}]}),
        case("detection_none", DETECT, {"img": img, "objs": []}),
        case("table_to_text", '<BOS> structured knowledge: " [STRUCT:database,uncased] "  . how to describe the '
                              "tripleset ? <EOS> -> <BOS> [TEXT:tgt] <EOS>",
             {"database": TRIPLES, "tgt": "atlanta is a metropolitan area in the united states in 2012."}),
    ]


def golden_vocab():
    from ofasys_fs.vocab import Vocabulary

    return Vocabulary.default(**VOCAB_CONFIG)


def encode_case(case: dict, vocab=None) -> dict:
    """The ids of one case with the current code: text groups, decoder, collated target and prefix, constraints."""
    from ofasys_fs.contracts import SampleContext
    from ofasys_fs.data.encode import RowEncoder

    vocab = vocab or golden_vocab()
    encoder = RowEncoder(case["name"], case["instruction"], vocab, answers=case["answers"])
    ctx = SampleContext(split=case["split"], task=case["name"], **case["context"])
    example = encoder.encode(case["row"], ctx)
    sample = encoder.collate([example])
    bins = vocab.range("bin")
    return {
        "encoder_modalities": [piece["modality"] for piece in example.encoder],
        "encoder_text_groups": [piece["tokens"].tolist() for piece in example.encoder if piece["modality"] == "TEXT"],
        "decoder_tokens": example.decoder_tokens.tolist(),
        "prev_output_tokens": sample["net_input"]["prev_output_tokens"][0].tolist(),
        "target": sample["target"][0].tolist(),
        "prefix_length": int(sample["prefix_lengths"][0]),
        "ntokens": sample["ntokens"],
        "constraints": [[position, "bin" if allowed == bins else list(allowed)]
                        for position, allowed in example.constraints],
    }


def load_golden() -> dict:
    """The stored table: {"vocab": VOCAB_CONFIG, "vocab_hash", "image_size", "cases": [{..., "expected"}]}."""
    return json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))


def write_golden() -> None:
    vocab = golden_vocab()
    cases = [{**case, "expected": encode_case(case, vocab)} for case in case_definitions()]
    table = {"vocab": VOCAB_CONFIG, "vocab_hash": vocab.hash, "image_size": list(IMAGE_SIZE), "cases": cases}
    GOLDEN_PATH.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    write_golden()
    for case in load_golden()["cases"]:
        vocab = golden_vocab()
        expected = case["expected"]
        print(f"== {case['name']}: {case['instruction']}")
        for group in expected["encoder_text_groups"]:
            print("   enc:", [vocab.token_string(t) for t in group])
        print("   dec:", [vocab.token_string(t) for t in expected["decoder_tokens"]])
        print("   target:", [vocab.token_string(t) for t in expected["target"]], "prefix", expected["prefix_length"],
              "ntokens", expected["ntokens"], "constraints", expected["constraints"])
