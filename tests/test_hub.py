"""OFASys.from_pretrained / inference, the shared inference core (Predictor, evaluate, merge_by_index) and
validation by generation during training, on the session's trained micro checkpoint (tests/conftest.py)."""
import json
import os

import pytest
import torch

from ofasys_fs import OFASys, Output
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.errors import CheckpointError, ConfigError, DataError
from ofasys_fs.inference import Predictor, evaluate, merge_by_index, shard_indices
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.tasks.base import Task

ANSWERS = ["colour", "animal", "number"]


@pytest.fixture(scope="module")
def hub(trained_checkpoint) -> OFASys:
    return OFASys.from_pretrained(trained_checkpoint.path, device="cpu")


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union


def spy_options(monkeypatch, predictor) -> list:
    """Record the keyword options each generate call of this predictor receives."""
    calls, generate = [], predictor.plan.generator.generate

    def recording(model, sample, **options):
        calls.append(options)
        return generate(model, sample, **options)

    monkeypatch.setattr(predictor.plan.generator, "generate", recording)
    return calls


def test_from_pretrained_rebuilds_tasks_vocab_and_model_from_the_file(hub, trained_checkpoint):
    assert [task.name for task in hub.tasks] == ["caption", "grounding", "topic"]
    assert all(type(task) is Task and "train" not in task.datasets for task in hub.tasks)
    assert hub.task("topic").answers == ANSWERS  # the closed set collected in training travels in the checkpoint
    assert hub.task("caption").templates[0].text == trained_checkpoint.instructions["caption"]
    assert len(hub.vocab) == hub.model.vocab_size and len(hub.vocab.range("bin")) == 100
    assert not hub.model.training and hub.data_cfg == DataConfig.for_model(hub.model.cfg) and hub.data_cfg.image_size == 32
    with pytest.raises(ConfigError, match="trained tasks"):
        hub.task("vqa")
    with pytest.raises(CheckpointError, match="no EMA weights"):
        OFASys.from_pretrained(trained_checkpoint.path, device="cpu", use_ema=True)


def test_memorised_captions_with_the_default_options(hub, trained_checkpoint):
    rows = trained_checkpoint.rows["caption"]
    outputs = hub.inference(trained_checkpoint.instructions["caption"], rows)
    assert [output.text for output in outputs] == [row["cap"] for row in rows]
    assert all(output.box is None and output.objects is None and output.score <= 0 for output in outputs)
    assert all(len(output.positional_scores) == len(output.tokens) + 1 for output in outputs)


def test_dict_gives_one_output_and_a_list_gives_outputs_in_order_whatever_the_batch(hub, trained_checkpoint):
    instruction, rows = trained_checkpoint.instructions["caption"], trained_checkpoint.rows["caption"][::-1]
    batched = hub.inference(instruction, rows, batch_size=5)
    single = hub(instruction, rows[3])  # __call__ is inference
    assert isinstance(single, Output) and isinstance(batched, list) and len(batched) == len(rows)
    assert single.text == batched[3].text and single.tokens == batched[3].tokens
    assert [o.text for o in batched] == [o.text for o in hub.inference(instruction, rows, batch_size=16)]


def test_falsy_options_reach_the_generator_and_defaults_fill_the_rest(hub, trained_checkpoint, monkeypatch):
    instruction = trained_checkpoint.instructions["caption"]
    calls = spy_options(monkeypatch, hub.predictor(instruction))
    row = trained_checkpoint.rows["caption"][0]
    hub.inference(instruction, row)
    hub.inference(instruction, row, beam_size=1, no_repeat_ngram_size=0, min_len=0, lenpen=0.0)
    defaults, given = calls
    assert (defaults["beam"], defaults["max_len_b"], defaults["no_repeat_ngram_size"]) == (5, 64, 3)
    assert (given["beam"], given["no_repeat_ngram_size"], given["min_len"], given["lenpen"]) == (1, 0, 0, 0.0)
    with pytest.raises(ValueError, match="nbest"):  # beam_size=1 is really 1: two hypotheses cannot exist
        hub.inference(instruction, row, beam_size=1, nbest=2)
    with pytest.raises(TypeError, match="beam_size or beam"):
        hub.inference(instruction, row, beam_size=2, beam=3)


def test_nbest_hypotheses_are_returned_best_first(hub, trained_checkpoint):
    output = hub.inference(trained_checkpoint.instructions["caption"], trained_checkpoint.rows["caption"][0],
                           beam_size=3, nbest=3)
    scores = [hypothesis.score for hypothesis in output.nbest]
    assert len(output.nbest) == 3 and scores == sorted(scores, reverse=True)
    assert output.nbest[0].text == output.text == "a ripe red apple"


def test_boxes_come_back_in_pixels_of_the_original_image(hub, trained_checkpoint, monkeypatch):
    instruction, rows = trained_checkpoint.instructions["grounding"], trained_checkpoint.rows["grounding"]
    calls = spy_options(monkeypatch, hub.predictor(instruction))
    outputs = hub.inference(instruction, rows, max_len_b=9)
    for output, row in zip(outputs, rows):
        assert output.text is None and len(output.tokens) == 4
        assert all(token in hub.vocab.range("bin") for token in output.tokens)
        assert iou(output.box, row["box"]) > 0.9, (row, output.box)
    assert (calls[0]["min_len"], calls[0]["max_len_b"]) == (4, 4)  # a box is exactly 4 bins, whatever is asked
    # the same quadrant in a 48x36 and a 36x48 image: the same bins, other pixels
    assert outputs[0].tokens == outputs[1].tokens and outputs[0].box[2] > outputs[1].box[2]


def test_closed_set_outputs_stay_within_the_answers_and_the_prompt_is_stripped(hub, trained_checkpoint):
    instruction, rows = trained_checkpoint.instructions["topic"], trained_checkpoint.rows["topic"]
    outputs = hub.inference(instruction, rows)
    assert [output.text for output in outputs] == [row["topic"] for row in rows]
    prompt = hub.vocab.encode_piece("the topic is")
    assert all(output.tokens[:len(prompt)] != prompt for output in outputs)
    exhaustive = hub.inference(instruction, rows, exhaustive=True, nbest=3)  # every answer scored
    assert [output.text for output in exhaustive] == [row["topic"] for row in rows]
    assert all(sorted(o.text for o in output.nbest) == sorted(ANSWERS) for output in exhaustive)
    unseen = [{"sentence": text} for text in ("i like the zebra one", "hello world", "seven seven seven")]
    assert all(output.text in ANSWERS for output in hub.inference(instruction, unseen, beam_size=2))
    # an instruction no task was trained with takes the answers of the task with the same closed_set column
    other = "[TEXT:sentence] which topic? -> [TEXT:topic,closed_set]"
    assert all(output.text in ANSWERS for output in hub.inference(other, rows[:4] + unseen))


def test_an_instruction_with_markers_is_the_trained_task(hub):
    predictor = hub.predictor("[IMAGE:img] <BOS> what does the image describe? <EOS> -> <BOS> [TEXT:cap] <EOS>")
    assert predictor.task_name == "caption"
    assert hub.predictor("[IMAGE:img] tell me what you see -> [TEXT:cap]").task_name == "inference"


def test_unavailable_outputs_and_bad_rows_are_clear_errors(hub, trained_checkpoint):
    with pytest.raises(ValueError, match=r"needs the adaptors \['image_code'\], which this model was not trained with"):
        hub.inference("what is the complete image? caption: [TEXT:text] -> [IMAGE,preprocess=image_vqgan,"
                      "adaptor=image_vqgan]", {"text": "a red apple"})
    with pytest.raises(DataError, match="column 'img'"):
        hub.inference(trained_checkpoint.instructions["caption"], {"picture": "x.png"})
    with pytest.raises(ValueError, match="no task .* closed set"):
        hub.inference("[TEXT:sentence] mood? -> [TEXT:mood,closed_set]", {"sentence": "hi"})
    with pytest.raises(TypeError, match="no option"):
        hub.inference(trained_checkpoint.instructions["caption"], trained_checkpoint.rows["caption"][0], beem=2)


def test_decoders_follow_their_shape_even_untrained(hub):
    """Random weights: the repetition grammar and a box-then-label decoder still give well-formed outputs."""
    torch.manual_seed(0)
    model = GeneralistModel(arch="micro").build(hub.vocab, ("text", None)).eval()
    images = [{"img": torch.zeros(3, 40, 60, dtype=torch.uint8)}, {"img": torch.zeros(3, 20, 10, dtype=torch.uint8)}]
    detect = RowEncoder("detect", "[IMAGE:img] objects? -> ( [BOX:objs.box] [TEXT:objs.label] )*", hub.vocab,
                        hub.data_cfg)
    for output, (width, height) in zip(Predictor(model, detect).predict(images, options={"max_len_b": 14}),
                                       [(60, 40), (10, 20)]):
        assert output.text is None and output.objects
        for item in output.objects:
            assert set(item) == {"box", "label"} and isinstance(item["label"], str)
            assert item["box"] is None or all(0 <= v <= limit for v, limit in zip(item["box"], [width, height] * 2))
    region = RowEncoder("region", "[IMAGE:img] the region? -> [BOX:region] [TEXT:label]", hub.vocab, hub.data_cfg)
    for output in Predictor(model, region).predict(images, options={"max_len_b": 8}):
        assert all(token in hub.vocab.range("bin") for token in output.tokens[:4]) and len(output.box) == 4
        assert isinstance(output.text, str)


def test_evaluate_scores_predictions_against_the_references(hub, trained_checkpoint):
    where = {"vocab": hub.vocab, "data_cfg": hub.data_cfg}
    task = hub.task("topic").add_dataset(trained_checkpoint.data_file("topic", "valid"), "valid")
    evaluation = evaluate(hub.model, task, "valid", max_samples=7, **where)
    assert evaluation.indices == list(range(7)) and evaluation.metrics == {"accuracy": 1.0}
    assert evaluation.predictions == [row["topic"] for row in trained_checkpoint.rows["topic"][:7]]
    assert evaluation.higher_is_better is True
    grounding = hub.task("grounding").add_dataset(trained_checkpoint.data_file("grounding", "valid"), "valid")
    assert evaluate(hub.model, grounding, "valid", **where).metrics["acc_iou"] == 1.0
    # two "ranks" decode strided shards; rank 0 merges both: the same result as one process
    sent = []
    other = evaluate(hub.model, task, "valid", max_samples=7, rank=1, world_size=2, gather=sent.append, **where)
    merged = evaluate(hub.model, task, "valid", max_samples=7, rank=0, world_size=2,
                      gather=lambda local: [sent[0], local], **where)
    assert other.indices == [1, 3, 5] and other.metrics == {}
    assert merged.indices == evaluation.indices and merged.predictions == evaluation.predictions
    assert merged.metrics == evaluation.metrics


def test_merge_by_index_orders_rows_and_drops_padding_duplicates():
    rank0 = [(0, "a"), (2, "c"), (4, "e")]
    rank1 = [(1, "b"), (3, "d"), (0, "a-padded")]  # a padded sampler repeats row 0 on the short rank
    assert merge_by_index([rank1, rank0]) == [(0, "a-padded"), (1, "b"), (2, "c"), (3, "d"), (4, "e")]
    assert [index for index, _ in merge_by_index([rank0, rank1], count=5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"missing \[3\]"):
        merge_by_index([rank0, [(1, "b")]], count=5)
    assert shard_indices(5, 1, 2) == [1, 3] and shard_indices(5, 0, 2) == [0, 2, 4]
    with pytest.raises(ValueError, match="rank 2"):
        shard_indices(5, 2, 2)


def test_training_validation_decodes_and_scores_every_task_with_a_metric(trained_checkpoint):
    folder = os.path.dirname(trained_checkpoint.path)
    records = [json.loads(line) for line in open(os.path.join(folder, "train_log.jsonl"), encoding="utf-8")]
    valid = [record for record in records if record["split"] == "valid"][-1]
    tasks = valid["tasks"]
    assert tasks["caption"]["cider"] > 5 and tasks["grounding"]["acc_iou"] == 1.0
    assert tasks["topic"]["accuracy"] == 1.0 and tasks["topic"]["token_accuracy"] == 1.0  # metric and loss statistic, both 0-1
    assert valid["best"] == tasks["caption"]["cider"]  # best_checkpoint_metric="caption.cider"
    best = OFASys.from_pretrained(os.path.join(folder, "checkpoint_best.pt"), device="cpu")
    assert best.inference(trained_checkpoint.instructions["topic"], {"sentence": "i like the dog one"}).text == "animal"


def test_the_best_checkpoint_follows_the_metric_direction():
    trainer = Trainer(best_checkpoint_metric="caption.cider")
    trainer.best, trainer.metric_directions = 1.0, {"caption.cider": True, "asr.wer": False}
    assert trainer.improved(2.0) and not trainer.improved(0.5)  # CIDEr: higher is better
    trainer.cfg.checkpoint.best_checkpoint_metric = "asr.wer"
    assert trainer.improved(0.5) and not trainer.improved(2.0)
    trainer.cfg.checkpoint.best_checkpoint_metric = "loss"  # no generation metric: the config's direction
    assert trainer.improved(0.5) and not trainer.improved(2.0)
