"""Label-smoothed cross-entropy (fairseq/OFA) with forced prefixes, constraint masks and task weights."""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..contracts import Criterion, Model
from ..registry import register_criterion
from ..tokenizer import PAD
from .box_attention import REGIONS, box_attention_penalty
from .box_distance import box_distance


@dataclasses.dataclass
class LabelSmoothedCEConfig:
    label_smoothing: float = 0.1  # epsilon: probability mass moved from the target to the other allowed tokens
    ignore_prefix_size: int = 0  # also ignore the first N target tokens of every row (fairseq)
    sentence_avg: bool = False  # normalise by sentences instead of tokens
    report_accuracy: bool = True  # log token_accuracy = n_correct / total in [0, 1] (argmax over the allowed tokens)
    # weight of the box-guided attention penalty per `<bin>` target token (criteria/box_attention.py); 0: off
    box_attention: float = 0.3
    # the cells a box coordinate's step is guided to: box, edge (the coordinate's edge of the box) or box_and_edge
    box_attention_region: str = "box"
    # weight of the expected coordinate distance per `<bin>` target token (criteria/box_distance.py); 0: off
    box_distance: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothed_ce: label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ignore_prefix_size < 0:
            raise ValueError(f"label_smoothed_ce: ignore_prefix_size must be >= 0, got {self.ignore_prefix_size}")
        if not self.box_attention >= 0:
            raise ValueError(f"label_smoothed_ce: box_attention must be >= 0, got {self.box_attention}")
        if not self.box_distance >= 0:
            raise ValueError(f"label_smoothed_ce: box_distance must be >= 0, got {self.box_distance}")
        if self.box_attention_region not in REGIONS:
            raise ValueError(f"label_smoothed_ce: box_attention_region must be one of {', '.join(REGIONS)}, "
                             f"got {self.box_attention_region!r}")


def loss_token_mask(sample: dict, ignore_prefix_size: int = 0, padding_idx: int = PAD) -> torch.Tensor:
    """BoolTensor[B, T]: target positions that get a loss (not `<pad>`, not inside the row's forced prefix).

    A row's ignored prefix is max(prefix_lengths[row], ignore_prefix_size) tokens from the target's start.
    """
    target = sample["target"]
    batch, length = target.shape
    prefix = sample.get("prefix_lengths")
    if prefix is None:
        prefix = torch.zeros(batch, dtype=torch.long, device=target.device)
    start = prefix.to(target.device).clamp(min=ignore_prefix_size)
    positions = torch.arange(length, device=target.device)
    return (target != padding_idx) & (positions[None, :] >= start[:, None])


def label_smoothed_nll_loss(
    lprobs: torch.Tensor, target: torch.Tensor, epsilon: float, allowed: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (smoothed loss, nll) for lprobs [N, V] and target [N].

    The smoothed target puts 1 - epsilon on the target and epsilon / (K - 1) on each other token, where
    K is V, or the number of allowed tokens of that position when `allowed` [N, V] is given (OFA's
    constraint-aware smoothing: disallowed tokens get neither probability nor smoothing mass).
    """
    nll = -lprobs.gather(-1, target[:, None]).squeeze(-1)
    if allowed is None:
        smooth = -lprobs.sum(-1)
        others = torch.full_like(nll, lprobs.size(-1) - 1)
    else:
        smooth = -lprobs.masked_fill(~allowed, 0.0).sum(-1)
        others = allowed.sum(-1).to(nll.dtype) - 1
    eps_other = epsilon / others.clamp(min=1)
    return (1.0 - epsilon - eps_other) * nll + eps_other * smooth, nll


def allowed_token_rows(sample: dict, keep: torch.Tensor, vocab_size: int) -> Optional[torch.Tensor]:
    """sample["constraint_masks"] ([B, T, V] or [B, 1, V], True = allowed) at the loss positions: [N, V]."""
    masks = sample.get("constraint_masks")
    if masks is None:
        return None
    batch, length = keep.shape
    if (
        masks.dtype != torch.bool
        or masks.dim() != 3
        or masks.size(0) != batch
        or masks.size(1) not in (1, length)
        or masks.size(2) != vocab_size
    ):
        raise ValueError(
            f"task {sample.get('task', '?')!r}: constraint_masks must be a BoolTensor [B, T, V] or [B, 1, V] "
            f"with B={batch}, T={length}, V={vocab_size}; got {masks.dtype} {list(masks.shape)}"
        )
    return masks.to(keep.device).expand(batch, length, vocab_size)[keep]


def check_targets_allowed(sample: dict, keep: torch.Tensor, target: torch.Tensor, allowed: torch.Tensor) -> None:
    """A target token outside its constraint mask would give an infinite loss: name the row instead."""
    target_allowed = allowed.gather(-1, target[:, None]).squeeze(-1)
    if bool(target_allowed.all()):
        return
    rows, positions = keep.nonzero(as_tuple=True)
    bad = int((~target_allowed).nonzero()[0])
    row_ids = sample.get("id")
    row = int(row_ids[rows[bad]]) if row_ids is not None else int(rows[bad])
    raise ValueError(
        f"task {sample.get('task', '?')!r}, row {row}: target token id {int(target[bad])} at target position "
        f"{int(positions[bad])} is not allowed by constraint_masks; the constraint (e.g. the closed answer set "
        f"or the <bin> range) must include every target token"
    )


@register_criterion("label_smoothed_ce", dataclass=LabelSmoothedCEConfig)
class LabelSmoothedCE(Criterion):
    """Label-smoothed cross-entropy summed over the target tokens that get a loss, times the task weight."""

    def __init__(self, cfg: Optional[LabelSmoothedCEConfig] = None, padding_idx: int = PAD):
        super().__init__()
        self.cfg = cfg or LabelSmoothedCEConfig()
        self.padding_idx = padding_idx

    def forward(self, model: Model, sample: dict) -> tuple[torch.Tensor, float, dict]:
        """Returns (loss sum * task_weight, sample size, logging output of unweighted sums)."""
        boxes = sample.get("target_boxes") if self.cfg.box_attention > 0 else None
        logits, extra = model(sample, cross_attention=True) if boxes is not None else model(sample)
        target = sample["target"]
        if logits.shape[:2] != target.shape:
            raise ValueError(
                f"task {sample.get('task', '?')!r}: model logits {list(logits.shape)} do not match "
                f"target {list(target.shape)} in batch and length"
            )
        keep = loss_token_mask(sample, self.cfg.ignore_prefix_size, self.padding_idx)
        logits, target = logits[keep].float(), target[keep]
        allowed = allowed_token_rows(sample, keep, logits.size(-1))
        if allowed is not None:
            check_targets_allowed(sample, keep, target, allowed)
            logits = logits.masked_fill(~allowed, -math.inf)
        lprobs = F.log_softmax(logits, dim=-1)
        token_loss, token_nll = self.token_losses(lprobs, target, allowed)
        loss, nll_loss = token_loss.sum(), token_nll.sum()
        box_sum = loss.new_zeros(())
        if boxes is not None:
            penalty = box_attention_penalty(extra["cross_attention"], extra["encoder_out"], boxes.to(loss.device),
                                            self.cfg.box_attention_region)
            box_sum = penalty[keep].sum()
            loss = loss + self.cfg.box_attention * box_sum
        distance_sum = loss.new_zeros(())
        bins = sample.get("box_bins")
        if self.cfg.box_distance > 0 and bins is not None:
            distance_sum = box_distance(logits, target, bins).sum()
            loss = loss + self.cfg.box_distance * distance_sum

        n_correct = (lprobs.argmax(-1) == target).sum() if self.cfg.report_accuracy else keep.new_zeros(())
        # One host sync for every logged number.
        loss_value, nll_value, ntokens, correct, box_value, distance_value = torch.stack(
            [loss.detach(), nll_loss.detach(), keep.sum().to(loss.dtype), n_correct.to(loss.dtype), box_sum.detach(),
             distance_sum.detach()]
        ).tolist()
        ntokens = int(ntokens)
        self.check_ntokens(sample, ntokens)
        nsentences = sample["target"].size(0)
        sample_size = nsentences if self.cfg.sentence_avg else ntokens
        logging_output = {
            "loss": loss_value,
            "nll_loss": nll_value,
            "ntokens": ntokens,
            "nsentences": nsentences,
            "sample_size": sample_size,
        }
        if self.cfg.report_accuracy:
            logging_output.update(n_correct=int(correct), total=ntokens)
        if boxes is not None:
            logging_output["box_attention"] = box_value
        if self.cfg.box_distance > 0 and bins is not None:
            logging_output["box_distance"] = distance_value
        return loss * sample.get("task_weight", 1.0), sample_size, logging_output

    def token_losses(self, lprobs: torch.Tensor, target: torch.Tensor,
                     allowed: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token (training loss, nll) at the loss positions; subclasses change the loss here."""
        return label_smoothed_nll_loss(lprobs, target, self.cfg.label_smoothing, allowed)

    def check_ntokens(self, sample: dict, ntokens: int) -> None:
        """Collation's ntokens must count the same tokens this loss sums (else normalisation is wrong)."""
        expected = sample.get("ntokens")
        if self.cfg.ignore_prefix_size == 0 and expected is not None and int(expected) != ntokens:
            raise ValueError(
                f"task {sample.get('task', '?')!r}: sample['ntokens']={int(expected)} but the target has "
                f"{ntokens} tokens outside <pad> and the forced prefixes (prefix_lengths)"
            )

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict]) -> dict[str, float]:
        """Sum logging outputs of several batches/ranks into fairseq's metrics (loss and nll in base 2)."""

        def total(key: str) -> float:
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size, ntokens = total("sample_size"), total("ntokens")
        metrics = {
            "loss": total("loss") / max(sample_size, 1) / math.log(2),
            "nll_loss": total("nll_loss") / max(ntokens, 1) / math.log(2),
        }
        metrics["ppl"] = 2 ** metrics["nll_loss"] if metrics["nll_loss"] < 1000 else math.inf
        if any("n_correct" in log for log in logging_outputs):
            metrics["token_accuracy"] = total("n_correct") / max(total("total"), 1)
        if any("box_attention" in log for log in logging_outputs):
            metrics["box_attention"] = total("box_attention") / max(ntokens, 1)
        if any("box_distance" in log for log in logging_outputs):
            metrics["box_distance"] = total("box_distance") / max(ntokens, 1)
        return metrics
