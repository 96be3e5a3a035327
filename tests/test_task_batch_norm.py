"""BatchNorm statistics per task (models/task_batch_norm.py): what each task's rows are normalised by at evaluation."""
import io

import numpy as np
import pytest
import torch
from torch import nn

from ofasys_fs.engine.trainer import Trainer
from ofasys_fs.hub import OFASys
from ofasys_fs.inference.evaluate import evaluate
from ofasys_fs.models.archs import resolve_config
from ofasys_fs.models.config import ModelConfig
from ofasys_fs.models.task_batch_norm import TaskBatchNorm2d, add_task_statistics
from ofasys_fs.registry import build_adaptor
from test_trainer import IMAGE_COLOUR, colour_task, copy_task, options, tokenizer  # noqa: F401 (a fixture)

CHANNELS = 3


def batches(seed: int, shift: float, count: int = 6) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(4, CHANNELS, 5, 5, generator=generator) * (1 + shift) + shift for _ in range(count)]


@pytest.fixture(params=[False, True], ids=["summed", "local_kernel"])
def trained(request) -> tuple[TaskBatchNorm2d, dict]:
    """One norm trained on two tasks' batches in turn (one task per batch, as a generalist trains), and plain
    BatchNorms trained on each task's batches alone and on all of them."""
    data = {"photos": batches(1, 0.0), "drawings": batches(2, 4.0)}
    norm = TaskBatchNorm2d(CHANNELS, local_kernel=request.param)
    norm.add_tasks(["photos", "drawings"])
    plain = {name: nn.BatchNorm2d(CHANNELS) for name in ("photos", "drawings", "all")}
    for pair in zip(data["photos"], data["drawings"]):
        for name, x in zip(data, pair):
            norm(x, name)
            plain[name](x)
            plain["all"](x)
    return norm.eval(), {name: bn.eval() for name, bn in plain.items()}


def test_each_task_is_evaluated_with_the_statistics_its_own_batches_gave(trained):
    norm, plain = trained
    x = torch.randn(2, CHANNELS, 5, 5) * 5 + 4
    for task in ("photos", "drawings"):
        assert torch.allclose(norm(x, task), plain[task](x), atol=1e-5)
    assert not torch.allclose(norm(x, "photos"), norm(x, "drawings"), atol=1e-2)


def test_unknown_tasks_and_untrained_slots_use_the_statistics_of_all_batches(trained):
    norm, plain = trained
    x = torch.randn(2, CHANNELS, 5, 5)
    assert torch.allclose(norm(x, None), plain["all"](x), atol=1e-5)
    assert torch.allclose(norm(x, "an unseen task"), plain["all"](x), atol=1e-5)
    norm.add_tasks(["photos", "charts"])  # known names keep their slot; a new one has no batches yet
    assert norm.tasks == ["photos", "drawings", "charts"]
    assert torch.allclose(norm(x, "charts"), plain["all"](x), atol=1e-5)
    assert torch.allclose(norm(x, "photos"), plain["photos"](x), atol=1e-5)


def test_the_statistics_travel_in_a_weights_only_state_dict(trained):
    norm, _ = trained
    buffer = io.BytesIO()
    torch.save(nn.Sequential(norm).state_dict(), buffer)
    buffer.seek(0)
    restored = nn.Sequential(TaskBatchNorm2d(CHANNELS))  # built without any task, as before a checkpoint loads
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    add_task_statistics(restored, ["drawings", "maps"])
    restored.eval()
    assert restored[0].tasks == ["photos", "drawings", "maps"]
    x = torch.randn(2, CHANNELS, 5, 5) + 2
    for task in ("photos", "drawings", None):
        assert torch.equal(restored[0](x, task), norm(x, task))


def test_local_kernel_trains_exactly_as_plain_batch_norm():
    norm, plain = TaskBatchNorm2d(CHANNELS, local_kernel=True), nn.BatchNorm2d(CHANNELS)
    norm.add_tasks(["photos"])
    with torch.no_grad():
        for module in (norm, plain):
            module.weight.copy_(torch.linspace(0.5, 2, CHANNELS))
            module.bias.copy_(torch.linspace(-1, 1, CHANNELS))
    for x in batches(3, 2.0):
        assert torch.equal(norm(x, "photos"), plain(x))
    assert torch.equal(norm.running_mean, plain.running_mean) and torch.equal(norm.running_var, plain.running_var)
    assert torch.allclose(norm.task_mean[0], plain.running_mean, atol=1e-6)
    assert torch.allclose(norm.task_var[0], plain.running_var, atol=1e-5)


def test_image_resnet_keeps_statistics_per_task_and_loads_plain_batch_norm_weights():
    cfg = resolve_config(ModelConfig(arch="micro", image_adaptor="image_resnet", image_size=32, resnet_depth=50))
    resnet = build_adaptor("image_resnet", cfg, nn.Embedding(10, cfg.embed_dim))
    plain_state = {key: value for key, value in resnet.state_dict().items() if "task_" not in key}
    norms = stem_norms(resnet)
    assert len(norms) == 1 + 3 * (3 + 4 + 6) + 3  # the stem, three per bottleneck, each stage's shortcut
    add_task_statistics(resnet, ["photos", "drawings"])
    resnet.train()
    for name, shift in (("photos", 0.0), ("drawings", 3.0), ("drawings", 3.0)):
        resnet({"modality": "IMAGE", "task": name, "image": torch.randn(2, 3, 32, 32) + shift})
    assert all(norm.task_batches.tolist() == [1, 2] for norm in norms)
    resnet.eval()
    image = torch.randn(1, 3, 32, 32) + 3
    photos, drawings = (resnet({"modality": "IMAGE", "task": name, "image": image}).embeddings
                        for name in ("photos", "drawings"))
    assert not torch.allclose(photos, drawings, atol=1e-3)
    fresh = build_adaptor("image_resnet", cfg, nn.Embedding(10, cfg.embed_dim))
    fresh.load_state_dict(plain_state)  # torchvision's, OFA's or an earlier checkpoint's BatchNorm: no task yet
    assert all(norm.tasks == [] for norm in stem_norms(fresh))


def stem_norms(model: nn.Module) -> list[TaskBatchNorm2d]:
    return [module for module in model.modules() if isinstance(module, TaskBatchNorm2d)]


def test_training_evaluation_checkpoints_and_inference_tell_the_stem_the_task(tokenizer, tmp_path):  # noqa: F811
    trainer = Trainer(**options(tokenizer, tmp_path, patch_stem="conv", max_update=4, sampling="round_robin"))
    model = trainer.fit(tasks=[copy_task(count=8), colour_task(count=6)])
    norms = stem_norms(model)
    assert len(norms) == 3 and all(norm.tasks == ["copy", "colour"] for norm in norms)
    assert all(norm.task_batches.tolist() == [0, 2] for norm in norms)  # copy has no image
    seen = []
    norms[0].register_forward_hook(lambda module, args, out: seen.append(args[1]))
    colour = next(task for task in trainer.tasks if task.name == "colour")
    evaluate(model, colour, "train", encoder=trainer.encoders["colour"], max_samples=3)
    assert seen and set(seen) == {"colour"}

    hub = OFASys.from_pretrained(str(tmp_path / "checkpoint_last.pt"), device="cpu")
    loaded = stem_norms(hub.model)
    assert [norm.tasks for norm in loaded] == [["copy", "colour"]] * 3
    assert all(torch.equal(a.task_mean, b.task_mean) and torch.equal(a.task_var, b.task_var)
               for a, b in zip(loaded, norms))
    seen.clear()
    loaded[0].register_forward_hook(lambda module, args, out: seen.append(args[1]))
    hub.inference(IMAGE_COLOUR, [{"img": np.full((32, 32, 3), 200, dtype=np.uint8)}])
    assert seen == ["colour"]


def test_video_frames_pass_their_task_to_the_stem_of_their_image_adaptor():
    cfg = resolve_config(ModelConfig(arch="micro", patch_stem="conv"))
    video = build_adaptor("video_frames", cfg, nn.Embedding(10, cfg.embed_dim))
    add_task_statistics(video, ["clips", "films"])
    video.train()({"modality": "VIDEO", "task": "films", "frames": torch.randn(2, 3, 3, 32, 32)})
    assert all(norm.task_batches.tolist() == [0, 1] for norm in stem_norms(video))
