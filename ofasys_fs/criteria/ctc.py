"""Criterion "label_smoothed_ce_ctc": label-smoothed cross-entropy plus ctc_weight x a CTC loss of the audio
encoder states against each row's phone sequence (ASR, as fairseq's label_smoothed_cross_entropy_with_ctc)."""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..contracts import Model
from ..registry import register_criterion
from ..tokenizer import PAD
from .label_smoothed_ce import LabelSmoothedCE, LabelSmoothedCEConfig

BLANK = 0  # the CTC head's output 0 (docs/model.md)


@dataclasses.dataclass
class LabelSmoothedCECTCConfig(LabelSmoothedCEConfig):
    ctc_weight: float = 1.0  # the CTC sum is added to the cross-entropy sum with this weight
    ctc_adaptor: str = "audio_fbank"  # encoder pieces of this adaptor (in encoder order) are the CTC input

    def __post_init__(self):
        super().__post_init__()
        if not self.ctc_weight >= 0:
            raise ValueError(f"label_smoothed_ce_ctc: ctc_weight must be >= 0, got {self.ctc_weight}")


class ExtrasRecorder:
    """Calls the model with ctc=True and keeps its extras, so LabelSmoothedCE.forward runs unchanged on it."""

    def __init__(self, model: Model):
        self.model, self.extra = model, None

    def __call__(self, sample: dict) -> tuple[torch.Tensor, dict]:
        logits, self.extra = self.model(sample, ctc=True)
        return logits, self.extra


def pack_positions(values: torch.Tensor, padding_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's unpadded positions to the front, in order: ([B, S, C], [B, S]) -> (packed, lengths [B])."""
    order = torch.argsort(padding_mask.to(torch.uint8), dim=1, stable=True)
    packed = values.gather(1, order[..., None].expand_as(values))
    return packed, (~padding_mask).sum(1)


@register_criterion("label_smoothed_ce_ctc", dataclass=LabelSmoothedCECTCConfig)
class LabelSmoothedCECTC(LabelSmoothedCE):
    """label_smoothed_ce + ctc_weight x CTC(model.ctc_head over the audio pieces' encoder states -> phones),

    for batches with sample["phone_targets"] [B, P] and sample["phone_target_lengths"] [B] (vocabulary phone
    ids, as collated for text_phone targets); other batches get label_smoothed_ce alone. The CTC term is a
    sum over rows (reduction "sum", like the cross-entropy) and is multiplied by the task weight too.
    Logs ctc_loss (unweighted sum, nats) and ctc_ntokens; "loss" includes the weighted CTC term.
    """

    uses_ctc_head = True  # the trainer builds the model's CTC head only for criteria that train it

    def __init__(self, cfg: Optional[LabelSmoothedCECTCConfig] = None, padding_idx: int = PAD):
        super().__init__(cfg or LabelSmoothedCECTCConfig(), padding_idx)

    def forward(self, model: Model, sample: dict) -> tuple[torch.Tensor, float, dict]:
        if sample.get("phone_targets") is None or self.cfg.ctc_weight == 0:
            return super().forward(model, sample)
        recorder = ExtrasRecorder(model)
        loss, sample_size, logging_output = super().forward(recorder, sample)
        ctc_loss, phone_tokens = self.ctc_loss(recorder.extra, sample)
        ctc_value = ctc_loss.item()
        logging_output.update(loss=logging_output["loss"] + self.cfg.ctc_weight * ctc_value,
                              ctc_loss=ctc_value, ctc_ntokens=phone_tokens)
        return loss + self.cfg.ctc_weight * sample.get("task_weight", 1.0) * ctc_loss, sample_size, logging_output

    def ctc_loss(self, extra: dict, sample: dict) -> tuple[torch.Tensor, int]:
        """Summed CTC loss of the batch and its number of phone targets."""
        encoder_out = extra["encoder_out"]
        columns = [torch.arange(start, end) for name, start, end in encoder_out.spans if name == self.cfg.ctc_adaptor]
        if not columns:
            raise ValueError(
                f"task {sample.get('task', '?')!r}: the batch has phone_targets but no {self.cfg.ctc_adaptor!r} "
                f"encoder piece to align them with (criterion label_smoothed_ce_ctc, option ctc_adaptor)"
            )
        index = torch.cat(columns).to(encoder_out.x.device)
        states, input_lengths = pack_positions(extra["ctc_logits"].index_select(1, index),
                                               encoder_out.padding_mask.index_select(1, index))
        targets, target_lengths = self.head_targets(sample, extra["ctc_phones"])
        self.check_alignable(sample, targets, target_lengths, input_lengths)
        lprobs = F.log_softmax(states.float(), dim=-1).transpose(0, 1)  # [S, B, 1 + P]
        loss = F.ctc_loss(lprobs, targets, input_lengths, target_lengths, blank=BLANK, reduction="sum")
        return loss, int(target_lengths.sum())

    @staticmethod
    def head_targets(sample: dict, phones: range) -> tuple[torch.Tensor, torch.Tensor]:
        """Vocabulary phone ids [B, P] -> CTC head ids (phone - phones.start + 1; 0 beyond each row's length)."""
        targets, lengths = sample["phone_targets"], sample.get("phone_target_lengths")
        task = sample.get("task", "?")
        if lengths is None or targets.dim() != 2 or lengths.shape != targets.shape[:1]:
            raise ValueError(f"task {task!r}: phone_targets must be [B, P] with phone_target_lengths [B], got "
                             f"{list(targets.shape)} and {None if lengths is None else list(lengths.shape)}")
        lengths = lengths.to(targets.device)
        valid = torch.arange(targets.size(1), device=targets.device)[None, :] < lengths[:, None]
        outside = valid & ((targets < phones.start) | (targets >= phones.stop))
        if bool(outside.any()):
            row, position = (int(i) for i in outside.nonzero()[0])
            raise ValueError(f"task {task!r}, row {row_id(sample, row)}: phone_targets[{position}] = "
                             f"{int(targets[row, position])} is not a phone id (the CTC head covers {phones})")
        return torch.where(valid, targets - phones.start + 1, BLANK), lengths

    @staticmethod
    def check_alignable(sample: dict, targets: torch.Tensor, target_lengths: torch.Tensor,
                        input_lengths: torch.Tensor) -> None:
        """CTC needs a position per phone plus a blank between repeated phones; name the first row without."""
        positions = torch.arange(1, targets.size(1), device=targets.device)
        repeats = ((targets[:, 1:] == targets[:, :-1]) & (positions[None, :] < target_lengths[:, None])).sum(1)
        needed = target_lengths + repeats
        short = (input_lengths.to(needed.device) < needed).nonzero()
        if len(short):
            row = int(short[0])
            raise ValueError(
                f"task {sample.get('task', '?')!r}, row {row_id(sample, row)}: the audio gives "
                f"{int(input_lengths[row])} encoder positions but its {int(target_lengths[row])} phones need at "
                f"least {int(needed[row])} for CTC; "
                f"the audio is too short for its transcript (or n_frames_per_step too large)"
            )

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict]) -> dict[str, float]:
        """label_smoothed_ce's metrics plus ctc_loss per phone target (base 2) when a batch had one."""
        metrics = LabelSmoothedCE.reduce_metrics(logging_outputs)
        if any("ctc_loss" in log for log in logging_outputs):
            total = sum(log.get("ctc_loss", 0.0) for log in logging_outputs)
            phones = sum(log.get("ctc_ntokens", 0) for log in logging_outputs)
            metrics["ctc_loss"] = total / max(phones, 1) / math.log(2)
        return metrics


def row_id(sample: dict, row: int) -> int:
    """The dataset row index of batch row `row` (sample["id"]), else the batch row."""
    ids = sample.get("id")
    return int(ids[row]) if ids is not None else row
