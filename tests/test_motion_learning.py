"""Motion learning (docs/motion.md): one micro model trained on captioning (tokens, cross-entropy) and
text-to-motion (the diffusion criterion) together generates, with DDIM and classifier-free guidance, motion that a
classifier trained on REAL CMU windows recognises as the prompt's clip; the same run on shuffled texts stays near
chance; the captioning half learns too; generated motion written as BVH reads back exactly; clear errors."""
import numpy as np
import pytest
import torch
from motion_clips import BOXING, JUMPS, clip, needs_clips
from motion_training import CAPTIONS, GENERATE, labelled, rows
from test_learning import greedy_decode

from ofasys_fs.contracts import SampleContext
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.data.motion_statistics import motion_statistics
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.errors import ConfigError, DataError
from ofasys_fs.guidance import drop_prompt
from ofasys_fs.inference.predictor import Predictor
from ofasys_fs.instruction import Instruction
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.motion import load_motion
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import build_adaptor, build_criterion, build_metric, build_preprocessor
from ofasys_fs.tasks.base import Task
from ofasys_fs.vocab import Vocabulary

DECODING = {"diffusion_steps": 20, "guidance_scale": 3.0, "sampling_seed": 0}
PROMPTS = [{"caption": caption} for caption in CAPTIONS.values() for _ in range(10)]  # chance 1/2
# seeds 1-3: motion 1.0 and captions 0.9; shuffled: motion 0.5 and captions 0.47-0.63
MOTION_ACCURACY, CAPTION_ACCURACY, CONTROL_CEILING = 0.8, 0.75, 0.65


def generate(trainer: Trainer, prompts: list[dict], **options) -> list:
    return Predictor(trainer.model, trainer.encoders["text_to_motion"]).predict(prompts, options={**DECODING,
                                                                                                   **options})


@needs_clips
def test_generated_motion_is_recognised_by_a_classifier_of_real_windows_and_shuffled_text_is_not(trained_motion):
    metric = build_metric({"name": "motion_accuracy", "classifier_train": labelled(rows(held_out=False)),
                           "classifier_test": labelled(rows(held_out=True)), "window": 24, "stride": 4})
    labels = [prompt["caption"] for prompt in PROMPTS]
    real = metric.compute([output.motion for output in generate(trained_motion[False], PROMPTS)], labels)
    control = metric.compute([output.motion for output in generate(trained_motion[True], PROMPTS)], labels)
    assert real["motion_classifier_ceiling"] >= 0.85 and real["chance"] == 0.5
    assert real["motion_accuracy"] >= MOTION_ACCURACY and control["motion_accuracy"] <= CONTROL_CEILING, (real,
                                                                                                          control)


@needs_clips
def test_the_captioning_task_trained_alongside_learns_and_shuffled_captions_do_not(trained_motion):
    test_rows = rows(held_out=True)
    assert not {row["block"] for row in test_rows} & {row["block"] for row in rows(held_out=False)}
    assert len(test_rows) == 2 * 3 * 5 and sum(row["caption"] == CAPTIONS[JUMPS] for row in test_rows) == 15

    def accuracy(trainer: Trainer) -> float:
        decoded = greedy_decode(trainer, "motion_caption", test_rows, 12)
        return float(np.mean([trainer.vocab.decode(ids).strip() == row["caption"]
                              for ids, row in zip(decoded, test_rows)]))

    real, control = accuracy(trained_motion[False]), accuracy(trained_motion[True])
    assert real >= CAPTION_ACCURACY and control <= CONTROL_CEILING, (real, control)


@needs_clips
def test_generated_motion_written_as_bvh_reads_back_exactly_on_the_training_skeleton(trained_motion, tmp_path):
    outputs = generate(trained_motion[False], PROMPTS[:1] + PROMPTS[-1:])
    training_skeleton = load_motion(clip(JUMPS)).skeleton
    for index, output in enumerate(outputs):
        motion = output.motion
        assert (motion.num_frames, motion.fps) == (24, 30.0) and output.frames.shape == (24, 6 + 6 * 31)
        path = output.save(str(tmp_path / f"{index}.bvh"))
        back = load_motion(path)
        training_skeleton.check_matches(back.skeleton, path)
        assert back.skeleton.layout() == motion.skeleton.layout() and back.fps == motion.fps
        np.testing.assert_allclose(back.rotations, motion.rotations, rtol=0, atol=1e-9)
        np.testing.assert_allclose(back.root_positions, motion.root_positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(back.joint_positions(), motion.joint_positions(), rtol=0, atol=1e-9)
    # sampling is batched: a row generated alone is the same as in the batch (same seed, same noise)
    alone = generate(trained_motion[False], PROMPTS[:1])[0]
    torch.testing.assert_close(alone.frames, outputs[0].frames, rtol=0, atol=1e-4)
    assert not torch.allclose(outputs[0].frames, outputs[1].frames, atol=1e-2)  # the prompts give other motion


@needs_clips
def test_generation_options_that_do_not_apply_are_config_errors(trained_motion):
    with pytest.raises(ConfigError, match=r"generation options \['beam'\] do not apply to ddim"):
        generate(trained_motion[False], PROMPTS[:1], beam=5)
    with pytest.raises(ConfigError, match=r"ddim: expected diffusion_steps in 1..1000"):
        generate(trained_motion[False], PROMPTS[:1], diffusion_steps=0)


def test_a_motion_output_needs_max_length_and_training_statistics():
    vocab = Vocabulary.default(num_bins=0, num_codes=0)
    with pytest.raises(ValueError, match=r"the MOTION output \[MOTION:motion\] needs max_length=N"):
        RowEncoder("t2m", "[TEXT:prompt] -> [MOTION:motion]", vocab)
    slot = Instruction.parse("[TEXT:prompt] -> [MOTION:motion,max_length=8]").decoder[0]
    output = build_preprocessor(slot.preprocess, slot, None, DataConfig())
    with pytest.raises(ValueError, match=r"has no motion statistics.*use a checkpoint trained on motion"):
        output.output_template(2)


@needs_clips
def test_condition_dropout_needs_text_on_the_encoder_side_and_says_how_to_train_without(tmp_path):
    span = {"path": clip(JUMPS), "start": 0, "end": 1}
    rows_ = [{"a": span, "b": span}] * 2
    instruction = "[MOTION:a,max_length=8] -> [MOTION:b,max_length=8]"
    settings = dict(arch="micro", device="cpu", num_bins=0, num_codes=0, batch_size=2, max_update=1, no_save=True,
                    save_dir=str(tmp_path), log_interval=1000)
    with pytest.raises(ConfigError, match="this encoder input has no text group.*--condition-dropout 0"):
        Trainer(**settings).fit(tasks=[Task(name="motion_only", instruction=instruction).add_dataset(rows_, "train")])
    without = Trainer(**settings, condition_dropout=0.0)
    without.fit(tasks=[Task(name="motion_only", instruction=instruction).add_dataset(rows_, "train")])
    with pytest.raises(ConfigError, match=r"condition_dropout.*must be in \[0, 1\)"):
        Trainer(**settings, condition_dropout=1.0)
    with pytest.raises(ConfigError, match="criterion diffusion needs a continuous output with targets"):
        build_criterion("diffusion")(None, {"task": "caption", "net_input": {"encoder": []}})


def test_the_diffusion_adaptor_refuses_windows_and_skeletons_larger_than_the_model_with_a_config_error():
    cfg = GeneralistModel(arch="micro", motion_feature_dim=200, motion_max_frames=16).cfg
    adaptor = build_adaptor("motion_6d_diffusion", cfg, torch.nn.Embedding(10, cfg.embed_dim))
    steps = torch.tensor([999])
    assert adaptor({"frames": torch.randn(1, 16, 192), "timesteps": steps}).embeddings.shape == (1, 16, 64)
    assert adaptor.project(torch.randn(1, 16, 64), {"frames": torch.randn(1, 16, 132)})["frames"].shape[-1] == 132
    with pytest.raises(ConfigError, match="24 frames, more than model config motion_max_frames=16"):
        adaptor({"frames": torch.randn(1, 24, 192), "timesteps": steps})
    with pytest.raises(ConfigError, match=r"features <= 200\], got \[1, 8, 300\].*motion_feature_dim"):
        adaptor({"frames": torch.randn(1, 8, 300), "timesteps": steps})


def test_guidance_needs_text_on_the_encoder_side():
    pieces = [{"modality": "MOTION", "frames": torch.zeros(2, 3, 12)}]
    with pytest.raises(ConfigError, match="classifier-free guidance replaces the prompt with an empty text"):
        drop_prompt(pieces, torch.tensor([True, False]))


@needs_clips
def test_training_statistics_refuse_a_second_skeleton_naming_task_row_column_and_file():
    span = lambda name: {"path": clip(name), "start": 0, "end": 1}  # noqa: E731
    task = Task(name="t2m", instruction=GENERATE)
    task.add_dataset([{"caption": "jumping", "clip": span(JUMPS)}, {"caption": "boxing", "clip": span(BOXING)}],
                     "train")
    with pytest.raises(DataError, match=r"task 't2m', train row 1, column 'clip': .*Boxing_Toes.bvh': its skeleton "
                                        r"\(21 joints\) differs from the skeleton of the first training clip"):
        motion_statistics([task], DataConfig())
    stored = motion_statistics([Task(name="t2m", instruction=GENERATE).add_dataset(
        [{"caption": "jumping", "clip": span(JUMPS)}], "train")], DataConfig())
    assert DataConfig(motion_statistics=stored).motion_statistics["hierarchy"].startswith("HIERARCHY")
    encoder = RowEncoder("t2m", GENERATE, Vocabulary.default(num_bins=0, num_codes=0),
                         DataConfig(motion_statistics=stored))
    with pytest.raises(DataError, match=r"task 't2m', row 3, column 'clip'.*Boxing_Toes.bvh"):
        encoder.encode({"caption": "boxing", "clip": span(BOXING)}, SampleContext(split="train", row_index=3))
