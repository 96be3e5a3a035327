"""Examples -> one batch (`sample`, the format of docs/internals.md): pad text groups, batch other pieces
through their preprocessor, shift the decoder, and build loss and constraint information."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional

import torch

from ..errors import DataError


def pad_sequences(sequences: Sequence[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D LongTensors to [B, T_max]; also returns their lengths [B]."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    batch = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), pad, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = sequence
    return batch, lengths


def collate_encoder(task: str, examples: Sequence[Any], piece_collaters: Sequence[Optional[Callable]],
                    pad: int) -> list[dict]:
    """One batched dict per encoder piece; `piece_collaters[i]` batches non-text piece i (None: a text group)."""
    batch = []
    for position, collate_piece in enumerate(piece_collaters):
        pieces = [example.encoder[position] for example in examples]
        modalities = {piece["modality"] for piece in pieces}
        if len(modalities) != 1:
            raise ValueError(f"task {task!r}: encoder piece {position} mixes modalities {sorted(modalities)} in one "
                             f"batch; a task's templates must share their slot structure")
        head = {"modality": pieces[0]["modality"], "adaptor": pieces[0]["adaptor"], "task": task}
        if collate_piece is None:
            tokens, lengths = pad_sequences([piece["tokens"] for piece in pieces], pad)
            positions = torch.arange(tokens.size(1))
            batch.append({**head, "tokens": tokens, "padding_mask": positions[None, :] >= lengths[:, None]})
        else:
            features = [{k: v for k, v in piece.items() if k not in ("modality", "adaptor")} for piece in pieces]
            batch.append({**head, **collate_piece(features)})
    return batch


def constraint_masks(examples: Sequence[Any], length: int, vocab_size: int) -> Optional[torch.Tensor]:
    """BoolTensor [B, T, V] (True = allowed) from each example's (target position, allowed ids) list, or None
    when no row is constrained; unconstrained positions allow everything."""
    if not any(example.constraints for example in examples):
        return None
    masks = torch.ones(len(examples), length, vocab_size, dtype=torch.bool)
    for row, example in enumerate(examples):
        for position, allowed in example.constraints:
            masks[row, position] = False
            if isinstance(allowed, range):
                masks[row, position, allowed.start: allowed.stop] = True
            else:
                masks[row, position, torch.as_tensor(list(allowed), dtype=torch.long)] = True
    return masks


def collate_decoder(task: str, examples: Sequence[Any], pad: int, vocab_size: int, bins: range = range(0)) -> dict:
    """prev_output_tokens / target / ntokens / constraint masks (when every row has a target) and the
    forced prefixes (always); `bins`: the vocabulary's `<bin>` ids, named with the target boxes."""
    prefix_tokens, prefix_lengths = pad_sequences([example.prefix_tokens for example in examples], pad)
    out: dict = {"prefix_tokens": prefix_tokens, "prefix_lengths": prefix_lengths}
    with_target = [example.decoder_tokens is not None for example in examples]
    if not any(with_target):
        out["ntokens"] = 0
        return out
    check_all_have_targets(task, examples, with_target)
    prev_output_tokens, _ = pad_sequences([example.decoder_tokens[:-1] for example in examples], pad)
    targets = []
    for example in examples:
        target = example.decoder_tokens[1:].clone()
        no_loss = ~example.loss_mask
        no_loss[: example.prefix_length] = False  # the prefix keeps its ids; the criterion skips it by length
        target[no_loss] = pad
        targets.append(target)
    target, _ = pad_sequences(targets, pad)
    positions = torch.arange(target.size(1))
    loss_positions = (target != pad) & (positions[None, :] >= prefix_lengths[:, None])
    out.update(prev_output_tokens=prev_output_tokens, target=target, ntokens=int(loss_positions.sum()))
    masks = constraint_masks(examples, target.size(1), vocab_size)
    if masks is not None:
        out["constraint_masks"] = masks
    out.update(collate_target_boxes(examples, target.size(1), bins))
    return out


def collate_target_boxes(examples: Sequence[Any], length: int, bins: range = range(0)) -> dict:
    """`target_boxes` [B, T, 4]: at each target position of a BOX target's `<bin>`s, that box's normalised
    (x0, y0, x1, y1); NaN elsewhere; and `box_bins`, the `<bin>` ids. Absent when no row has a BOX target
    (criteria/box_attention.py and box_distance.py read them)."""
    if not any(example.target_boxes for example in examples):
        return {}
    boxes = torch.full((len(examples), length, 4), float("nan"))
    for row, example in enumerate(examples):
        for start, box in example.target_boxes:
            boxes[row, start: start + len(box)] = torch.tensor(box)
    return {"target_boxes": boxes, "box_bins": bins}


def collate_decoder_features(task: str, examples: Sequence[Any], slot: Any, preprocessor: Any) -> dict:
    """A continuous output: the decoder piece {"modality", "adaptor"} plus, when every row has a target, the
    preprocessor's collate(their features) with ntokens = target steps, else its output_template; empty forced
    prefixes."""
    piece = {"modality": slot.modality, "adaptor": slot.adaptor}
    out: dict = {"prefix_tokens": torch.zeros(len(examples), 0, dtype=torch.long),
                 "prefix_lengths": torch.zeros(len(examples), dtype=torch.long), "ntokens": 0, "decoder": piece}
    with_target = [example.decoder_features is not None for example in examples]
    if any(with_target):
        check_all_have_targets(task, examples, with_target)
        piece.update(preprocessor.collate([example.decoder_features for example in examples]))
        out["ntokens"] = sum(example.target_length for example in examples)
    else:
        piece.update(preprocessor.output_template(len(examples)))
    return out


def check_all_have_targets(task: str, examples: Sequence[Any], with_target: list) -> None:
    if not all(with_target):
        missing = [int(example.index) for example, has in zip(examples, with_target) if not has]
        raise DataError(f"task {task!r}: rows {missing} have no target but other rows of the batch do; "
                         f"a batch is either all with targets (train/valid/test) or all without (inference)")


def collate_phone_targets(examples: Sequence[Any], pad: int) -> dict:
    """`phone_targets` [B, P] (padded with `<pad>`) and `phone_target_lengths` [B] when every row has them."""
    phones = [example.phone_targets for example in examples]
    if any(p is None for p in phones):
        return {}
    batch, lengths = pad_sequences(phones, pad)
    return {"phone_targets": batch, "phone_target_lengths": lengths}


def collate_examples(task: str, examples: Sequence[Any], piece_collaters: Sequence[Optional[Callable]],
                     pad: int, vocab_size: int, output: Optional[tuple] = None, bins: range = range(0)) -> dict:
    """The full `sample` dict of a batch of Examples of one task; `output` = (slot, preprocessor) of a continuous
    output slot, whose targets become net_input["decoder"] instead of decoder tokens; `bins`: the `<bin>` ids."""
    if not examples:
        raise ValueError(f"task {task!r}: cannot collate an empty batch")
    lengths = {len(example.encoder) for example in examples}
    if lengths != {len(piece_collaters)}:
        raise ValueError(f"task {task!r}: rows of one batch have {sorted(lengths)} encoder pieces, expected "
                         f"{len(piece_collaters)}")
    if output is None:
        decoder = collate_decoder(task, examples, pad, vocab_size, bins)
    else:
        decoder = collate_decoder_features(task, examples, *output)
    prev_output_tokens = decoder.pop("prev_output_tokens", None)
    decoder_piece = decoder.pop("decoder", None)
    net_input = {"encoder": collate_encoder(task, examples, piece_collaters, pad)}
    if prev_output_tokens is not None:
        net_input["prev_output_tokens"] = prev_output_tokens
    if decoder_piece is not None:
        net_input["decoder"] = decoder_piece
    return {
        "task": task,
        "id": torch.tensor([int(example.index) for example in examples], dtype=torch.long),
        "nsentences": len(examples),
        "net_input": net_input,
        **decoder,
        **collate_phone_targets(examples, pad),
        "rows": [example.row for example in examples],
        "image_sizes": [example.image_sizes for example in examples],
    }
