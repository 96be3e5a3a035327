"""The example plugin in user_dir/: each part registered, buildable by name, usable in instructions."""
import os

import torch

from ofasys_fs import import_user_dir
from ofasys_fs.instruction import Instruction
from ofasys_fs.registry import (
    ADAPTOR_REGISTRY,
    build_criterion,
    build_generator,
    build_task,
)

USER_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "user_dir")


def test_every_part_registers_and_builds():
    import_user_dir(USER_DIR)
    task = build_task("reverse_words")
    assert task.name == "reverse_words" and task.criterion == "focal_ce"
    assert task.instruction.encoder_slots[0].adaptor == "text_conv"
    assert "text_conv" in ADAPTOR_REGISTRY
    assert build_criterion({"name": "focal_ce", "gamma": 1.0}).cfg.gamma == 1.0
    assert build_generator("plugin_greedy").cfg.max_len == 32


def test_adaptor_name_accepted_in_any_instruction():
    import_user_dir(USER_DIR)
    inst = Instruction.parse("summarise [TEXT:doc,adaptor=text_conv] -> [TEXT:summary]")
    assert inst.encoder_slots[0].adaptor == "text_conv"


def test_focal_loss_downweights_confident_tokens():
    import_user_dir(USER_DIR)
    focal, plain = build_criterion({"name": "focal_ce", "gamma": 2.0, "label_smoothing": 0.0}), \
        build_criterion({"name": "focal_ce", "gamma": 0.0, "label_smoothing": 0.0})
    lprobs = torch.log_softmax(torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), -1)
    target = torch.tensor([0, 0])
    focal_loss, nll = focal.token_losses(lprobs, target, None)
    plain_loss, _ = plain.token_losses(lprobs, target, None)
    assert torch.allclose(plain_loss, nll)
    ratio = focal_loss / plain_loss
    assert ratio[0] < 0.01 and abs(float(ratio[1]) - (2 / 3) ** 2) < 1e-5
