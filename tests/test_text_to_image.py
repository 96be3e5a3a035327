"""Text-to-image (issue 21): a micro model learns class-conditional generation of real digit scans, judged by a
classifier trained on real scans, while a control trained on shuffled captions stays near chance; the generation
options (guidance, rerankers, n-best), Output.save and ofasys-generate's image files."""
import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import T2I_CLASSES, T2I_OPTIONS, text_to_image_rows, train_text_to_image
from image_data import shuffled_captions
from PIL import Image

from ofasys_fs.cli.generate import main as generate_main
from ofasys_fs.contracts import SampleContext
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.errors import PluginError
from ofasys_fs.hub import OFASys
from ofasys_fs.image_tokenizers.files import load_image_tokenizer
from ofasys_fs.registry import build_generator, build_metric, build_task

SEED_INSTRUCTION = ('what is the complete image? caption: [TEXT:text]"? -> '
                    '[IMAGE,preprocess=image_vqgan,adaptor=image_vqgan]')
HELD_OUT_ROWS = 80


@pytest.fixture(scope="module")
def judge():
    train, held_out = text_to_image_rows()
    return build_metric({"name": "classifier_accuracy", "train_data": train, "test_data": held_out})


@pytest.fixture(scope="module")
def model(text_to_image_checkpoint):
    return OFASys.from_pretrained(text_to_image_checkpoint, device="cpu")


def captions(rows: list) -> list:
    return [{"text": row["text"]} for row in rows]


def accuracies(model: OFASys, judge, rows: list) -> tuple[dict, dict]:
    """The judge's scores of images generated for the rows' captions: sampled without guidance, and as by default
    (text_to_image: guidance_scale=3)."""
    labels = [row["label"] for row in rows]
    return tuple(judge.compute([o.image for o in model.inference(SEED_INSTRUCTION, captions(rows), sampling_seed=1,
                                                                 **options)], labels)
                 for options in ({"guidance_scale": 1.0}, {}))


def test_micro_model_learns_class_conditional_generation_and_shuffled_captions_do_not(
        model, judge, image_tokenizer, tmp_path):
    train, held_out = text_to_image_rows()
    rows = held_out[:HELD_OUT_ROWS]
    sampled, guided = accuracies(model, judge, rows)
    control = OFASys.from_pretrained(train_text_to_image(shuffled_captions(train), tmp_path, image_tokenizer.path),
                                     device="cpu")
    shuffled, shuffled_guided = accuracies(control, judge, rows)
    assert sampled["real_accuracy"] >= 0.95 and sampled["chance"] == 1 / len(T2I_CLASSES)
    assert sampled["classifier_accuracy"] >= 0.5 and guided["classifier_accuracy"] >= 0.8, (sampled, guided)
    assert max(shuffled["classifier_accuracy"], shuffled_guided["classifier_accuracy"]) <= 0.4, (shuffled,
                                                                                                shuffled_guided)


def test_outputs_are_images_of_the_tokenizer_and_save_as_png(model, image_tokenizer, tmp_path):
    output = model.inference(SEED_INSTRUCTION, {"text": "a handwritten seven"}, sampling_seed=3)
    assert output.image.size == (8, 8) and output.image.mode == "L"
    assert len(output.tokens) == 16 and output.text is None and "image" not in output.to_dict()
    path = output.save(tmp_path / "seven")
    assert path.endswith("seven.png")
    assert np.array_equal(np.array(Image.open(path)), np.array(output.image))


def test_candidates_are_reranked_by_likelihood_and_guidance_changes_them(model):
    row = {"text": "a handwritten four"}
    ranked = model.inference(SEED_INSTRUCTION, row, beam=6, nbest=6, sampling_seed=5, guidance_scale=1.0)
    scores = [hypothesis.score for hypothesis in ranked.nbest]
    assert scores == sorted(scores, reverse=True) and len(set(map(tuple, (h.tokens for h in ranked.nbest)))) > 1
    unranked = model.inference(SEED_INSTRUCTION, row, beam=6, nbest=6, sampling_seed=5, guidance_scale=1.0,
                               reranker="none")
    assert sorted(h.score for h in unranked.nbest) == sorted(scores)  # the same samples, in sampling order
    guided = model.inference(SEED_INSTRUCTION, row, beam=6, nbest=6, sampling_seed=5)  # the task's guidance 3
    assert [h.tokens for h in guided.nbest] != [h.tokens for h in ranked.nbest]
    with pytest.raises(PluginError, match='unknown reranker "clip"'):
        model.inference(SEED_INSTRUCTION, row, reranker="clip")


def test_guidance_needs_nothing_but_the_collated_sample(model):
    """The generator called on a collated batch (as ofasys-validate, fairseq-generate or a user's loop do) guides
    exactly as through the Predictor: the empty prompt is made from the sample itself."""
    predictor = model.predictor(SEED_INSTRUCTION)
    rows = captions(text_to_image_rows()[1][:6])
    sample = predictor.encoder.collate([predictor.encoder.encode(row, SampleContext(split="inference", row_index=i))
                                        for i, row in enumerate(rows)])
    options = predictor.plan.options({"sampling_seed": 1})
    assert options["guidance_scale"] == 3.0  # the task's default
    generator = build_generator("code_sampling")
    guided = [list(hyps[0]["tokens"]) for hyps in generator.generate(model.model, sample, **options)]
    unguided = generator.generate(model.model, sample, **{**options, "guidance_scale": 1.0})
    assert guided == [output.tokens for output in model.inference(SEED_INSTRUCTION, rows, sampling_seed=1)]
    assert guided != [list(hyps[0]["tokens"]) for hyps in unguided]


def test_generate_writes_a_png_per_row_and_a_grid_and_lists_them(text_to_image_checkpoint, tmp_path, capsys):
    rows = captions(text_to_image_rows()[1][:5])
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["--path", text_to_image_checkpoint, "--instruction", SEED_INSTRUCTION, "--data", str(data),
            "--device", "cpu", "--sampling-seed", "1"]
    assert generate_main([*argv, "--results-path", str(tmp_path / "out") + os.sep]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "generate-test.jsonl").read_text().splitlines()]
    assert [line["file"] for line in lines] == [f"test-media/{i}.png" for i in range(5)]
    assert all(Image.open(tmp_path / "out" / line["file"]).size == (8, 8) for line in lines)
    assert Image.open(tmp_path / "out" / "test-media" / "grid.png").size[0] > 5 * 8
    capsys.readouterr()
    assert generate_main(argv) == 1
    assert "generates media (images, speech, motion): give --results-path" in capsys.readouterr().err


def test_image_infilling_trains_and_is_scored_with_psnr(image_tokenizer, tmp_path):
    train, held_out = text_to_image_rows()
    task = build_task("image_infilling").add_dataset(train[:64], "train").add_dataset(held_out[:4], "valid")
    Trainer(image_tokenizer=image_tokenizer.path, save_dir=str(tmp_path), **{**T2I_OPTIONS, "max_update": 8,
                                                                             "disable_validation": False}).fit(tasks=[task])
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    valid = [entry["tasks"]["image_infilling"] for entry in log if entry["split"] == "valid"]
    assert valid and 5 < valid[-1]["psnr"] < 40  # generated vs the original scans
    model = OFASys.from_pretrained(str(tmp_path / "checkpoint_last.pt"), device="cpu")
    output = model.inference(task.instruction.text, {"img": held_out[0]["img"]}, sampling_seed=1)
    assert output.image.size == (8, 8) and len(output.tokens) == 16


def test_the_documented_commands_run_as_printed(text_to_image_checkpoint, tmp_path, monkeypatch):
    """docs/image_generation.md's commands, run exactly as printed in a folder holding the files they name."""
    from ofasys_fs.cli.train_image_tokenizer import main as tokenizer_main

    page = (Path(__file__).resolve().parents[1] / "docs" / "image_generation.md").read_text(encoding="utf-8")
    commands = [line for line in page.splitlines() if line.startswith(("ofasys-train-image-tokenizer --data",
                                                                       "ofasys-generate "))]
    assert len(commands) == 2
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits" / "images").mkdir(parents=True)
    with open(tmp_path / "digits" / "train.jsonl", "w") as handle:
        for index, row in enumerate(text_to_image_rows()[0][:200]):
            Image.fromarray(row["img"]).save(tmp_path / "digits" / "images" / f"{index}.png")
            handle.write(json.dumps({"img": f"images/{index}.png"}) + "\n")
    (tmp_path / "ckpt").mkdir()
    os.symlink(text_to_image_checkpoint, tmp_path / "ckpt" / "checkpoint_last.pt")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"text": "a handwritten seven"}) + "\n")
    mains = {"ofasys-train-image-tokenizer": tokenizer_main, "ofasys-generate": generate_main}
    for command in commands:
        program, *argv = shlex.split(command)
        assert mains[program](argv) == 0, command
    assert load_image_tokenizer("tok.pt").num_codes == 125 and Path("tok-reconstructions.png").exists()
    assert json.loads(Path("out/generate-test.jsonl").read_text())["file"] == "test-media/0.png"
