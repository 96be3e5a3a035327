"""OFA's released checkpoints in ofasys_fs (docs/pretrained.md): random-weight files in OFA's three published layouts
(fairseq .pt + BPE trio, Hugging Face folder, OFASys multitask.pt; tests/ofa_files.py) built from OFA's parameter
names and shapes at a tiny size, converted by the commands the docs print, then checked against an independent
restatement of OFA's forward (tests/ofa_reference.py): teacher-forced log-probs, greedy decodes and their
per-token log-probs."""
import contextlib
import os
import pathlib
import re
import shlex
import types

import pytest
import torch
from PIL import Image

import ofa_files as files
import ofa_reference as ref
from ofasys_fs import convert_ofa
from ofasys_fs.cli import convert_ofa as convert_cli
from ofasys_fs.cli import train as train_cli
from ofasys_fs.contracts import SampleContext
from ofasys_fs.errors import CheckpointError
from ofasys_fs.hub import OFASys
from ofasys_fs.models.archs import resolve_config
from ofasys_fs.models.config import ModelConfig
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.preprocess.image import ImagePreprocessor
from ofasys_fs.pretrained.ofa_weights import check_against_model, infer_config, map_weights, ofa_name
from ofasys_fs.vocab import Vocabulary

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "pretrained.md"
KEYS = pathlib.Path(__file__).resolve().parent / "data" / "ofa_tiny_keys.tsv"
DIMS, CODES, BINS, IMAGE_SIZE = ref.Dims(), 16, 20, 64
CAPTION = "[IMAGE:img] what does the image describe? -> [TEXT:cap]"
IMAGE_CODE_PARTS = ("decoder.code_layernorm_embedding", "decoder.embed_image_positions", "decoder.image_pos_ln",
                    "decoder.image_rel_pos_table_list")


@contextlib.contextmanager
def inside(folder):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def documented_commands(program):
    """The command lines docs/pretrained.md prints for `program`, in order."""
    return [line.strip() for line in DOCS.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith(program + " ")]


def caption_rows(folder, count):
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    rows = []
    for index in range(count):
        name = f"img{index}.png"
        Image.new("RGB", (40 + 8 * index, 30), colours[index % 4]).save(folder / name)
        rows.append({"img": name, "cap": ["a red square", "a green square", "a blue square", "a yellow one"][index % 4]})
    return rows


@pytest.fixture(scope="module")
def ofa(tmp_path_factory):
    """OFA's files at a tiny size, named as docs/pretrained.md names them, converted by the documented commands."""
    folder = tmp_path_factory.mktemp("ofa")
    order = files.write_bpe_dir(folder / "OFA" / "utils" / "BPE")
    vocab_size = 4 + len(order) + 3 + 1 + CODES + BINS
    weights = ref.random_weights(DIMS, vocab_size)
    files.write_fairseq_checkpoint(folder / "ofa_tiny.pt", weights, DIMS, CODES, BINS, IMAGE_SIZE)
    files.write_huggingface_folder(folder / "ofa-tiny", weights, DIMS, folder / "OFA" / "utils" / "BPE", order, CODES, BINS)
    files.write_ofasys_checkpoint(folder / "multitask.pt", weights, DIMS, order, CODES, BINS)
    (folder / "data" / "coco").mkdir(parents=True)
    for split, count in (("train", 4), ("valid", 2)):
        rows = caption_rows(folder / "data" / "coco", count)
        (folder / "data" / "coco" / f"{split}.jsonl").write_text("".join(f'{{"img": "{r["img"]}", "cap": "{r["cap"]}"}}\n'
                                                                        for r in rows))
    Image.new("RGB", (50, 40), (120, 60, 200)).save(folder / "cat.jpg")
    with inside(folder):
        codes = [convert_cli.main(shlex.split(line)[1:]) for line in documented_commands("ofasys-convert-ofa")]
    return types.SimpleNamespace(folder=folder, order=order, vocab_size=vocab_size, weights=weights, codes=codes)


def converted(ofa, name):
    return torch.load(ofa.folder / name, weights_only=True)


def test_the_fixture_has_ofa_s_names_and_every_released_size_maps_completely():
    """The fixture builder reproduces OFA's ofa_tiny names and shapes; every released size maps onto its ofa_* arch
    with no tensor missing, unexpected or mis-shaped (shapes only, on the meta device)."""
    listed = [line.split("\t") for line in KEYS.read_text().splitlines()]
    tiny = ref.fairseq_shapes(ref.RELEASED["ofa_tiny"], 59457)
    assert {name: f"{list(shape)}" for name, shape in tiny} == {name: shape for name, shape in listed}
    for arch, dims in ref.RELEASED.items():
        shapes = ref.fairseq_shapes(dims, 59457)
        assert len(shapes) == ref.RELEASED_KEY_COUNTS[arch]
        with torch.device("meta"):
            weights = {name: torch.empty(shape) for name, shape in shapes if not name.endswith("rp_bucket")}
            for tied in ("decoder.embed_tokens.weight", "decoder.output_projection.weight"):
                weights[tied] = weights["encoder.embed_tokens.weight"]
            cfg = infer_config(weights, {})
            model = GeneralistModel.from_config(cfg, 59457, ["text", "image_resnet"])
        assert cfg.arch == arch
        preset = resolve_config(ModelConfig(arch=arch))
        assert {name: getattr(cfg, name) for name in ("embed_dim", "encoder_layers", "decoder_layers", "resnet_depth",
                                                      "text_rel_buckets", "image_rel_buckets", "max_source_positions")} \
            == {name: getattr(preset, name) for name in ("embed_dim", "encoder_layers", "decoder_layers", "resnet_depth",
                                                          "text_rel_buckets", "image_rel_buckets", "max_source_positions")}
        mapped = map_weights(weights, cfg)
        check_against_model(mapped.state, model.state_dict(), ofa_name)
        assert sorted(mapped.unmapped) == sorted(name for name, _ in shapes if name.startswith(IMAGE_CODE_PARTS))


def test_documented_commands_convert_all_three_layouts(ofa, capsys):
    assert len(ofa.codes) == 3 and ofa.codes == [0, 0, 0]
    fairseq, huggingface, ofasys = (converted(ofa, name) for name in
                                    ("ofa_tiny_fs.pt", "ofa_tiny_hf_fs.pt", "ofasys_multitask_fs.pt"))
    for other in (huggingface, ofasys):
        assert other["model"].keys() == fairseq["model"].keys()
        assert all(torch.equal(other["model"][key], value) for key, value in fairseq["model"].items())
    assert sorted(fairseq["train_meta"]["converted_from"]["unmapped"]) == sorted(
        name for name in ofa.weights if name.startswith(IMAGE_CODE_PARTS))
    assert fairseq["config"]["model"]["image_resize"] == "pil" and fairseq["config"]["data"]["image_resize"] == "pil"
    assert fairseq["config"]["model"]["image_size"] == IMAGE_SIZE
    assert {name.split(".")[2] for name in ofasys["train_meta"]["converted_from"]["unmapped"]
            if name.startswith(("encoder.adaptor", "decoder.adaptor"))} == {"audio_fbank", "image_vqgan", "text"}
    assert "embedding row <extra>_0" in ofasys["train_meta"]["converted_from"]["unmapped"]
    # the three vocabularies give OFA's ids: 4 + the dict.txt line of each GPT-2 token
    text = " what does the image describe?"
    expected = [4 + ofa.order.index(i) for i in files.gpt2_ids(ofa.folder / "OFA" / "utils" / "BPE", text)]
    for checkpoint in (fairseq, huggingface, ofasys):
        vocab = Vocabulary.from_dict(checkpoint["vocab"])
        assert vocab.encode(text) == expected and len(vocab) == ofa.vocab_size
        assert vocab.decode([0, *expected, 2, vocab.bin_id(3)]) == text.strip() + " <bin>_3"
    assert ofasys["vocab"]["hash"] == fairseq["vocab"]["hash"]
    loaded = OFASys.from_pretrained(str(ofa.folder / "ofa_tiny_fs.pt"), device="cpu")  # round trip, strictly
    assert all(torch.equal(value, fairseq["model"][key]) for key, value in loaded.model.state_dict().items())
    assert loaded.vocab.hash == fairseq["vocab"]["hash"] and loaded.data_cfg.image_resize == "pil"
    again = convert_ofa(str(ofa.folder / "ofa_tiny.pt"), str(ofa.folder / "again.pt"),
                        bpe_dir=str(ofa.folder / "OFA" / "utils" / "BPE"))
    assert again.train_flags()[:2] == ["--arch", "ofa_base"] and "--embed-dim" in again.train_flags()
    again_weights = converted(ofa, "again.pt")["model"]
    assert all(torch.equal(again_weights[key], value) for key, value in fairseq["model"].items())


def check_against_reference(model, weights, vocab_size, entangle=False):
    """Teacher-forced log-probs of a padded image + text batch, and step-by-step decoding with the K/V cache."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    tokens = torch.randint(4, vocab_size, (2, 7), generator=generator)
    tokens[:, 0], tokens[0, -1], tokens[1, 4], tokens[1, 5:] = 0, 2, 2, 1
    prev = torch.randint(4, vocab_size, (2, 6), generator=generator)
    prev[:, 0] = 0
    pieces = [{"modality": "TEXT", "adaptor": "text", "tokens": tokens, "padding_mask": tokens.eq(1)},
              {"modality": "IMAGE", "adaptor": "image_resnet", "image": images}]  # image_first puts it first
    with torch.no_grad():
        expected = ref.decode(weights, DIMS, prev, ref.encode(weights, DIMS, tokens, images), entangle)
        logits, extra = model({"net_input": {"encoder": pieces, "prev_output_tokens": prev}})
        state = {}
        steps = [model.decoder(prev[:, :t + 1], extra["encoder_out"], state)[0] for t in range(prev.size(1))]
    torch.testing.assert_close(torch.log_softmax(logits, -1), expected, rtol=0, atol=5e-5)
    torch.testing.assert_close(torch.log_softmax(torch.cat(steps, 1), -1), expected, rtol=0, atol=5e-5)
    assert expected.std() > 1  # the comparison is not between two near-constant tensors


def test_converted_model_computes_what_ofa_computes(ofa):
    check_against_reference(OFASys.from_pretrained(str(ofa.folder / "ofa_tiny_fs.pt"), device="cpu").model,
                            ofa.weights, ofa.vocab_size)


def test_a_model_with_ofa_s_arch_defaults_converts_and_computes_what_ofa_computes(ofa):
    """OFA's arch defaults rather than the released flags: no NormFormer parts, decoder positions added to the
    token embeddings (no --disable-entangle)."""
    weights = ref.random_weights(DIMS, ofa.vocab_size, seed=5, normformer=False)
    files.write_fairseq_checkpoint(ofa.folder / "defaults.pt", weights, DIMS, CODES, BINS, IMAGE_SIZE, released=False)
    report = convert_ofa(str(ofa.folder / "defaults.pt"), str(ofa.folder / "defaults_fs.pt"),
                         bpe_dir=str(ofa.folder / "OFA" / "utils" / "BPE"))
    assert not (report.config.scale_heads or report.config.scale_attn or report.config.scale_fc)
    assert report.config.entangle_decoder_positions
    check_against_reference(OFASys.from_pretrained(str(ofa.folder / "defaults_fs.pt"), device="cpu").model, weights,
                            ofa.vocab_size, entangle=True)


def test_greedy_caption_and_its_log_probs_equal_ofa_s(ofa):
    """The user path: from_pretrained, an OFA instruction, a picture file; OFA's preprocessing and ids."""
    with inside(ofa.folder):
        model = OFASys.from_pretrained("ofa_tiny_fs.pt", device="cpu")
        out = model.inference(CAPTION, data={"img": "cat.jpg"}, beam=1, max_len_b=8, no_repeat_ngram_size=1)
    prompt = [4 + ofa.order.index(i) for i in files.gpt2_ids(ofa.folder / "OFA" / "utils" / "BPE",
                                                         " what does the image describe?")]
    image = ref.pixels(Image.open(ofa.folder / "cat.jpg"), IMAGE_SIZE)[None]
    tokens, scores = ref.greedy(ofa.weights, DIMS, torch.tensor([[0, *prompt, 2]]), image, max_len=8)
    assert out.tokens + [2] == tokens and len(out.tokens) >= 3
    assert out.positional_scores == pytest.approx(scores, abs=1e-4)


def test_fine_tune_from_the_converted_checkpoint_with_the_documented_command(ofa, capsys):
    with inside(ofa.folder):
        [command] = documented_commands("ofasys-train")
        assert train_cli.main(shlex.split(command)[1:]) == 0
        assert re.search(r"finetuning from ofa_tiny_fs\.pt: loaded \d+ tensors; 0 missing .*; 0 unexpected",
                         capsys.readouterr().out)
        save_dir = pathlib.Path(re.search(r"--save-dir (\S+)", command).group(1))
        trained = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
        start = converted(ofa, "ofa_tiny_fs.pt")
        assert trained["train_meta"]["num_updates"] > 0 and trained["vocab"]["hash"] == start["vocab"]["hash"]
        assert {**trained["config"]["model"], "ctc_head": None} == start["config"]["model"]
        changed = [key for key, value in start["model"].items() if not torch.equal(trained["model"][key], value)]
        assert "decoder.layers.0.ffn.block.fc1.weight" in changed
        out = OFASys.from_pretrained(str(save_dir / "checkpoint_last.pt"), device="cpu").inference(
            CAPTION, data={"img": "cat.jpg"}, beam=2, max_len_b=4)
        assert out.tokens


def test_ofa_image_preprocessing_is_pil_bicubic_with_mean_and_std_one_half(ofa):
    data_cfg = DataConfig.for_model(resolve_config(ModelConfig(arch="ofa_tiny", image_size=IMAGE_SIZE)))
    assert data_cfg.image_resize == "pil" and data_cfg.image_mean == data_cfg.image_std == (0.5, 0.5, 0.5)
    slot, context = types.SimpleNamespace(attrs={}), types.SimpleNamespace(base_dir=str(ofa.folder), is_train=False)
    noise = torch.randint(0, 256, (90, 70, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    picture = Image.fromarray(noise.numpy())
    image = ImagePreprocessor(slot, None, data_cfg)(picture, context)["image"]
    assert torch.equal(image, ref.pixels(picture, IMAGE_SIZE))
    torch_filter = ImagePreprocessor(slot, None, DataConfig(image_size=IMAGE_SIZE))(picture, context)["image"]
    assert not torch.equal(torch_filter, image)  # the other filter differs: the setting matters


def corrupted(ofa, name, change):
    weights = dict(ofa.weights)
    change(weights)
    path = ofa.folder / name
    files.write_fairseq_checkpoint(path, weights, DIMS, CODES, BINS, IMAGE_SIZE)
    return str(path)


@pytest.mark.parametrize("name, change, message", [
    ("shape.pt", lambda w: w.update({"encoder.layers.1.fc1.weight": torch.zeros(DIMS.ffn, DIMS.dim + 1)}),
     r"wrong shape: encoder\.layers\.1\.fc1\.weight \[64, 33\] \(expected \[64, 32\]\)"),
    ("missing.pt", lambda w: w.pop("decoder.layers.1.cross_attn_ln.bias"),
     r"missing tensors: decoder\.layers\.1\.cross_attn_ln\.bias"),
    ("unknown.pt", lambda w: w.update({"encoder.mystery.weight": torch.zeros(3)}),
     r"not OFA's \(unknown names\): \['encoder\.mystery\.weight'\]"),
    ("untied.pt", lambda w: w.update({"decoder.output_projection.weight": w["encoder.embed_tokens.weight"] + 1}),
     r"decoder\.output_projection\.weight differs from encoder\.embed_tokens\.weight"),
    ("buckets.pt", lambda w: w.update({"encoder.token_rp_bucket": w["encoder.token_rp_bucket"].flip(0)}),
     r"encoder\.token_rp_bucket does not match OFA's bucket function"),
])
def test_a_tensor_that_does_not_fit_is_an_error_that_names_it(ofa, name, change, message):
    with pytest.raises(CheckpointError, match=message):
        convert_ofa(corrupted(ofa, name, change), str(ofa.folder / "bad_fs.pt"),
                    bpe_dir=str(ofa.folder / "OFA" / "utils" / "BPE"))
    assert not (ofa.folder / "bad_fs.pt").exists()


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_instead_of_an_ofa_checkpoint_is_refused_and_nothing_runs(ofa, capsys):
    marker, path = ofa.folder / "ran", ofa.folder / "evil.pt"
    torch.save({"args": None, "model": {"encoder.embed_tokens.weight": torch.zeros(2)}, "x": RunsACommand(marker)},
               path)
    assert convert_cli.main([str(path), "--out", str(ofa.folder / "evil_fs.pt"), "--bpe-dir", "x"]) == 1
    error = capsys.readouterr().err
    assert re.search(r"refusing to load .*evil\.pt: the pickle asks for (posix|os|nt)\.system", error)
    assert len(error.strip().splitlines()) == 1 and not marker.exists() and not (ofa.folder / "evil_fs.pt").exists()


def test_sources_missing_their_files_say_what_is_expected(ofa, tmp_path):
    with pytest.raises(CheckpointError, match=r"needs --bpe-dir: the folder with OFA's encoder\.json, vocab\.bpe, "
                                              r"dict\.txt"):
        convert_ofa(str(ofa.folder / "ofa_tiny.pt"), str(tmp_path / "x.pt"))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"has no weights: expected model\.safetensors or pytorch_model\.bin"):
        convert_ofa(str(tmp_path / "hf"), str(tmp_path / "x.pt"))


def test_ofa_layer_flags_mix_with_an_ofasys_fs_arch():
    """Each OFA detail is a model option of its own: a micro model with some of them builds and runs."""
    model = GeneralistModel(arch="micro", vocab_size=50, adaptor_names=["text", None], scale_heads=True,
                            scale_fc=True, attn_scale_factor=2.0, text_positions="ofa", text_rel_buckets=8,
                            text_rel_max_distance=31, type_embedding=True).eval()
    names = set(model.state_dict())
    assert "encoder.layers.0.self_attn.block.head_scale" in names and "encoder.layers.0.ffn.block.inner_norm.weight" \
        in names and not any("output_norm" in name for name in names)
    assert model.encoder.adaptors["text"].positions.table.weight.shape[0] == 1024 + 2
    tokens = torch.randint(4, 50, (2, 5))
    logits, _ = model({"net_input": {"encoder": [{"modality": "TEXT", "adaptor": "text", "tokens": tokens}],
                                     "prev_output_tokens": tokens}})
    assert logits.shape == (2, 5, 50) and torch.isfinite(logits).all()


def test_use_ema_takes_the_ema_weights_of_a_fairseq_checkpoint(ofa):
    ema = ref.random_weights(DIMS, ofa.vocab_size, seed=9)
    path = ofa.folder / "with_ema.pt"
    files.write_fairseq_checkpoint(path, ofa.weights, DIMS, CODES, BINS, IMAGE_SIZE)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["extra_state"]["ema"] = ema
    torch.save(checkpoint, path)
    bpe = str(ofa.folder / "OFA" / "utils" / "BPE")
    convert_ofa(str(path), str(ofa.folder / "ema_fs.pt"), bpe_dir=bpe, use_ema=True)
    weights = converted(ofa, "ema_fs.pt")["model"]
    assert torch.equal(weights["encoder.layers.0.ffn.block.fc1.weight"], ema["encoder.layers.0.fc1.weight"])
    with pytest.raises(CheckpointError, match=r"has no EMA weights \(extra_state\['ema'\]\)"):
        convert_ofa(str(ofa.folder / "ofa_tiny.pt"), str(ofa.folder / "x.pt"), bpe_dir=bpe, use_ema=True)


PROMPTS = [  # OFA's prompt for each task (data/*_dataset.py), as an instruction, a row, and the output kind
    (CAPTION, {"img": "cat.jpg"}, " what does the image describe?", "text"),
    ("[IMAGE:img] [TEXT:question] -> [TEXT:answer]", {"img": "cat.jpg", "question": "what color is the cat?"},
     " what color is the cat?", "text"),
    ('[IMAGE:img] which region does the text " [TEXT:cap] " describe? -> [BOX:box]', {"img": "cat.jpg", "cap": "a cat"},
     ' which region does the text " a cat " describe?', "box"),
    ('[IMAGE:img] does the image describe " [TEXT:hyp] "? -> [TEXT:label]', {"img": "cat.jpg", "hyp": "two dogs"},
     ' does the image describe " two dogs "?', "text"),
    ('what is the summary of article " [TEXT:src] "? -> [TEXT:tgt]', {"src": "a cat sleeps on the sofa"},
     ' what is the summary of article " a cat sleeps on the sofa "?', "text"),
]


@pytest.mark.parametrize("instruction, row, prompt, output", PROMPTS, ids=["caption", "vqa", "grounding", "snli_ve",
                                                                          "gigaword"])
def test_ofa_s_task_prompts_encode_to_ofa_s_ids_and_decode(ofa, instruction, row, prompt, output):
    with inside(ofa.folder):
        model = OFASys.from_pretrained("ofa_tiny_fs.pt", device="cpu")
        example = model.predictor(instruction).encoder.encode(row, SampleContext(base_dir=str(ofa.folder)))
        out = model.inference(instruction, data=row, beam=2, max_len_b=4)
    [text] = [piece["tokens"].tolist() for piece in example.encoder if piece["modality"] == "TEXT"]
    ids = [4 + ofa.order.index(i) for i in files.gpt2_ids(ofa.folder / "OFA" / "utils" / "BPE", prompt)]
    assert text == [0, *ids, 2]
    if output == "box":
        assert len(out.box) == 4 and all(0 <= x <= 50 for x in out.box[::2]) and all(0 <= y <= 40 for y in out.box[1::2])
    else:
        assert out.tokens and out.text is not None
