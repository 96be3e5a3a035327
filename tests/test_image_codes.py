"""The image_code preprocessor and adaptor (issue 21): an image as `<code>_i` target tokens constrained to the code
ids, codes given directly in every form, an encoder piece with 2-D positions, and clear errors for bad images,
codes, grids and tokenizer files."""
import json

import numpy as np
import pytest
import torch
from image_data import TOKENIZER, digit_rows

from ofasys_fs.contracts import SampleContext
from ofasys_fs.data.encode import EncodeError, RowEncoder
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.errors import CheckpointError, ConfigError
from ofasys_fs.image_tokenizers.files import FILE_FORMAT, save_image_tokenizer
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import build_image_tokenizer, build_task
from ofasys_fs.tasks.base import Task
from ofasys_fs.vocab import Vocabulary


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.default(num_bins=0, num_codes=125)


def encoder_for(instruction: str, vocab, tokenizer_path: str, **data) -> RowEncoder:
    return RowEncoder("t2i", instruction.replace("TOK", tokenizer_path), vocab, DataConfig(**data))


def ctx(split="train", row=3) -> SampleContext:
    return SampleContext(split=split, task="t2i", row_index=row)


def test_a_target_image_becomes_constrained_code_tokens(vocab, image_tokenizer):
    encoder = encoder_for("[TEXT:text] -> [IMAGE:img,tokenizer=TOK]", vocab, image_tokenizer.path)
    row = digit_rows()[0]
    example = encoder.encode(row, ctx())
    codes = image_tokenizer.tokenizer.encode(torch.tensor(row["img"] / 255.0, dtype=torch.float32)[None, None])
    expected = codes.flatten() + vocab.range("code").start
    assert example.decoder_tokens.tolist() == [vocab.bos, *expected.tolist(), vocab.eos]
    assert example.constraints == [(i, vocab.range("code")) for i in range(16)] and example.loss_mask.all()
    sample = encoder.collate([example, encoder.encode(digit_rows()[1], ctx(row=4))])
    allowed = sample["constraint_masks"][0]
    assert allowed[:16, vocab.range("code").start].all() and not allowed[:16, vocab.range("text").start].any()
    assert allowed[16].all()  # </s> keeps the full softmax


@pytest.mark.parametrize("form", ["list", "rows", "text", "array", "tensor"])
def test_codes_given_directly_equal_the_image_codes(vocab, image_tokenizer, form):
    encoder = encoder_for("[TEXT:text] -> [IMAGE:img,tokenizer=TOK]", vocab, image_tokenizer.path)
    row = digit_rows()[5]
    codes = image_tokenizer.tokenizer.encode(torch.tensor(row["img"] / 255.0, dtype=torch.float32)[None, None])[0]
    flat = codes.flatten().tolist()
    given = {"list": flat, "rows": codes.tolist(), "text": " ".join(map(str, flat)),
             "array": codes.numpy().astype(np.int32), "tensor": codes}[form]
    expected = encoder.encode(row, ctx()).decoder_tokens
    assert torch.equal(encoder.encode({**row, "img": given}, ctx()).decoder_tokens, expected)


def test_an_encoder_code_piece_is_embedded_with_grid_positions(vocab, image_tokenizer):
    encoder = encoder_for("[IMAGE:codes,preprocess=image_code,tokenizer=TOK] what digit? -> [TEXT:label]", vocab,
                          image_tokenizer.path)
    rows = [{"codes": list(range(16)), "label": "zero"}, {"codes": [3] * 16, "label": "one"}]
    sample = encoder.collate([encoder.encode(row, ctx(row=i)) for i, row in enumerate(rows)])
    piece = sample["net_input"]["encoder"][0]
    assert piece["adaptor"] == "image_code" and piece["tokens"].shape == (2, 16)
    model = GeneralistModel(arch="micro", image_code_grid=(4, 4)).build(vocab, ["text", "image_code"])
    logits, extra = model(sample)
    assert logits.shape[:2] == sample["target"].shape and extra["encoder_out"].spans[0] == ("image_code", 0, 16)


def test_the_decoder_adds_cell_positions_to_code_tokens_only(vocab):
    model = GeneralistModel(arch="micro", image_code_grid=(4, 4)).build(vocab, ["text", "image_code"])
    adaptor = model.encoder.adaptors["image_code"]
    code = vocab.range("code").start
    tokens = torch.tensor([[vocab.bos, code, code + 1, vocab.range("text").start, code + 2]])
    added = adaptor.decoder_positions(tokens, 0)
    assert added[0, 0].abs().sum() == 0 and added[0, 3].abs().sum() == 0  # <s> and text get nothing
    cell = adaptor.decoder_rows.weight[0] + adaptor.decoder_cols.weight[1]  # position 2 holds cell 1 = (0, 1)
    assert torch.allclose(added[0, 2], cell)
    assert torch.allclose(adaptor.decoder_positions(tokens[:, 2:3], 2)[0, 0], cell)  # incremental decoding agrees


BAD_VALUES = [
    ([1, 2, 3], "expected 16 image codes (4 x 4, the tokenizer's grid), got 3"),
    (" ".join(["0"] * 15 + ["200"]), "image code 200 is outside the tokenizer's codes 0..124"),
    ([1.5] * 16, "image codes given as a list must be integers"),
    (np.zeros(5, dtype=np.uint8), "image array of shape (5,)"),
    ("nowhere.png", "nowhere.png"),
]


@pytest.mark.parametrize("value, reason", BAD_VALUES)
def test_bad_images_and_codes_name_the_row_and_column(vocab, image_tokenizer, value, reason):
    encoder = encoder_for("[TEXT:text] -> [IMAGE:img,tokenizer=TOK]", vocab, image_tokenizer.path)
    with pytest.raises(EncodeError) as caught:
        encoder.encode({"text": "a handwritten one", "img": value}, ctx(row=7))
    assert "row 7" in str(caught.value) and "column 'img'" in str(caught.value) and reason in str(caught.value)


def test_a_grid_the_model_cannot_hold_is_refused(vocab, image_tokenizer):
    with pytest.raises(ValueError, match=r"makes 4x4 = 16 codes, which with </s> exceed the model's "
                                         r"max_target_positions=12"):
        encoder_for("[TEXT:text] -> [IMAGE:img,tokenizer=TOK]", vocab, image_tokenizer.path, max_target_positions=12)


def test_too_few_code_ids_or_no_tokenizer_are_config_errors(image_tokenizer, tmp_path):
    task = build_task("text_to_image").add_dataset(digit_rows()[:4], "train")
    options = dict(arch="micro", device="cpu", num_bins=0, max_update=1, no_save=True)
    with pytest.raises(ConfigError, match="num_codes=50 .* smaller than the 125 codes of the image tokenizer"):
        Trainer(image_tokenizer=image_tokenizer.path, num_codes=50, **options).fit(tasks=[task])
    with pytest.raises(ConfigError, match="needs an image tokenizer: set image_tokenizer=PATH"):
        Trainer(**options).fit(tasks=[task])
    other = tmp_path / "grid2.pt"
    save_image_tokenizer(build_image_tokenizer({**TOKENIZER, "grid": 2}), str(other))
    two = Task(name="other", instruction=f"[TEXT:text] -> [IMAGE:img,tokenizer={other}]")
    with pytest.raises(ConfigError, match=r"must share their code grid; .* have grids \[\(2, 2\), \(4, 4\)\]"):
        Trainer(image_tokenizer=image_tokenizer.path, **options).fit(tasks=[task, two.add_dataset(digit_rows()[:4])])


def bad_file(path, kind: str, good: str):
    if kind == "a model checkpoint":
        torch.save({"version": 1, "vocab": {}, "model": {}}, path)
    elif kind == "an unregistered kind":
        torch.save({"format": FILE_FORMAT, "version": 1, "kind": "dalle", "config": {}, "weights": {}}, path)
    elif kind == "a truncated file":
        path.write_bytes(open(good, "rb").read()[:300])
    elif kind == "code to run":
        torch.save({"format": FILE_FORMAT, "payload": torch.nn.Linear(1, 1)}, path)
    elif kind == "weights of another size":
        state = torch.load(good, weights_only=True)
        state["config"]["hidden"] = 4
        torch.save(state, path)


@pytest.mark.parametrize("kind, message", [
    ("a model checkpoint", "is not an ofasys_fs image tokenizer file (a model checkpoint"),
    ("an unregistered kind", "an image tokenizer of kind 'dalle', which is not registered (known: fsq, vqgan"),
    ("a truncated file", "not a readable"),
    ("code to run", "refusing to load"),
    ("weights of another size", "its weights do not fit its fsq config"),
])
def test_bad_tokenizer_files_are_named(image_tokenizer, tmp_path, kind, message):
    path = tmp_path / "tok.pt"
    bad_file(path, kind, image_tokenizer.path)
    task = build_task("text_to_image").add_dataset(digit_rows()[:4], "train")
    with pytest.raises(CheckpointError) as caught:
        Trainer(arch="micro", device="cpu", num_bins=0, max_update=1, no_save=True,
                image_tokenizer=str(path)).fit(tasks=[task])
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_preprocess_checks_image_outputs_with_the_image_tokenizer(image_tokenizer, tmp_path, capsys):
    from PIL import Image

    from ofasys_fs.cli.preprocess import main as preprocess_main

    (tmp_path / "images").mkdir()
    rows = digit_rows()[:6]
    for index, row in enumerate(rows):
        Image.fromarray(row["img"]).save(tmp_path / "images" / f"{index}.png")
    lines = [{"text": row["text"], "img": f"images/{index}.png"} for index, row in enumerate(rows)]
    lines[4]["img"] = "images/missing.png"
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    argv = ["--input", str(tmp_path / "train.jsonl"), "--destdir", str(tmp_path / "shards"), "--instruction",
            build_task("text_to_image").instruction.text]
    assert preprocess_main(argv) == 1
    assert "needs an image tokenizer: set image_tokenizer=PATH" in capsys.readouterr().err
    assert preprocess_main([*argv, "--image-tokenizer", image_tokenizer.path]) == 1
    assert "line 5 (row 4): column 'img'" in capsys.readouterr().err
    assert preprocess_main([*argv, "--image-tokenizer", image_tokenizer.path, "--skip-bad-rows"]) == 0
    assert "wrote 5 rows" in capsys.readouterr().out


def test_shards_can_store_image_codes_for_one_tokenizer(image_tokenizer, tmp_path, capsys):
    from PIL import Image

    from ofasys_fs.cli.preprocess import main as preprocess_main
    from ofasys_fs.data.dataset import TaskDataset
    from ofasys_fs.data.shards import read_manifest
    from ofasys_fs.errors import DataError

    (tmp_path / "images").mkdir()
    rows = digit_rows()[:5]
    for index, row in enumerate(rows):
        Image.fromarray(row["img"]).save(tmp_path / "images" / f"{index}.png")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": row["text"], "img": f"images/{i}.png"}) + "\n"
                                                  for i, row in enumerate(rows)))
    task = build_task("text_to_image")
    assert preprocess_main(["--input", str(tmp_path / "train.jsonl"), "--destdir", str(tmp_path / "shards"),
                            "--instruction", task.instruction.text, "--image-tokenizer", image_tokenizer.path,
                            "--image-codes"]) == 0
    assert "img (json)" in capsys.readouterr().out
    assert read_manifest(str(tmp_path / "shards"))["image_codes"] == {"img": image_tokenizer.tokenizer.content_hash}
    task.add_dataset(str(tmp_path / "shards"), "train")
    vocab = Vocabulary.default(num_bins=0, num_codes=125)
    encoder = RowEncoder.for_task(task, vocab, DataConfig(image_tokenizers={"": image_tokenizer.path}))
    from_codes = TaskDataset(task, "train", encoder)[2].decoder_tokens
    from_image = encoder_for("[TEXT:text] -> [IMAGE:img,tokenizer=TOK]", vocab, image_tokenizer.path).encode(
        rows[2], ctx()).decoder_tokens
    assert torch.equal(from_codes, from_image)
    other = tmp_path / "other.pt"
    save_image_tokenizer(build_image_tokenizer(TOKENIZER), str(other))
    with pytest.raises(DataError, match="holds the image codes of tokenizer sha256:.* in column 'img'"):
        TaskDataset(task, "train", RowEncoder.for_task(task, vocab, DataConfig(image_tokenizers={"": str(other)})))


def test_an_output_only_adaptor_turns_on_the_unused_parameter_search(image_tokenizer):
    """image_code serves only the decoder here: its encoder-side weights get no gradient, which DDP must know."""
    task = build_task("text_to_image").add_dataset(digit_rows()[:4], "train")
    trainer = Trainer(arch="micro", device="cpu", num_bins=0, max_update=1, no_save=True, batch_size=4,
                      image_tokenizer=image_tokenizer.path)
    model = trainer.fit(tasks=[task])
    unused = [name for name, p in model.named_parameters() if p.grad is None and "image_code" in name]
    assert unused and trainer.find_unused_parameters() is True
