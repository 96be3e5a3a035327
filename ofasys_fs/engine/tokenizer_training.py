"""Training an image tokenizer (fsq) on the images of a row source: the API behind
`ofasys-train-image-tokenizer` (docs/image_generation.md, "Training a tokenizer").

Deterministic for a seed: the model starts from torch's seed and the rows of update u are drawn by
`rng_for(seed, ..., u)`, so a run resumed from its state file (`OUT.state`, written every save_interval
updates and removed at the end) ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Optional, Union

import torch
from tqdm import tqdm

from ..checkpoint import atomic_write, load_torch_file
from ..config import config_to_dict
from ..contracts import ImageTokenizer
from ..data.rows import as_row_source
from ..errors import CheckpointError, ConfigError, DataError
from ..image_tokenizers.files import save_image_tokenizer, tokenizer_payload
from ..image_tokenizers.images import image_grid, image_tensor, psnr, reconstruct, to_pil
from ..instruction import column_value
from ..media import MediaError
from ..options import at_least, check_fields, fraction, option
from ..registry import build_image_tokenizer
from ..rng import check_seed, rng_for

STATE_FORMAT = "ofasys_fs.image_tokenizer_training"
PICTURE_COLUMNS = 16  # held-out images shown in the originals-vs-reconstructions picture
RESUME_INDEPENDENT = ("max_update", "log_interval", "save_interval")  # may change when a run is resumed


@dataclasses.dataclass
class TokenizerTrainConfig:
    """How a tokenizer is trained: the image column, updates, batch, learning rate, seed, held-out share."""

    column: str = option("img", "the rows' image column")
    max_update: int = option(1500, "training updates", check=at_least(1))
    batch_size: int = option(64, "images per update", check=at_least(1))
    lr: float = option(2e-3, "Adam learning rate (cosine decay to 0)", check=at_least(0))
    seed: int = option(1, "seed of the initial weights, the held-out split and the batches", check=check_seed)
    valid_fraction: float = option(0.1, "share of the rows held out for the log's PSNR (ignored with valid_data)",
                                   check=fraction)
    log_interval: int = option(250, "log the training loss and the held-out PSNR every N updates",
                               check=at_least(1))
    save_interval: int = option(250, "write the resumable state OUT.state every N updates", check=at_least(1))

    def __post_init__(self) -> None:
        check_fields(self, "image tokenizer training option")


@dataclasses.dataclass
class TokenizerTraining:
    """A trained tokenizer and what its training measured on the held-out rows."""

    tokenizer: ImageTokenizer
    path: str
    summary: dict  # rows, valid_rows, updates, valid_mse, valid_psnr, mean_image_psnr, codes_used, ...
    picture: Optional[str] = None  # originals (top) vs reconstructions (bottom), PNG


def load_images(source: Any, column: str, size: int, channels: int, split: str = "train") -> torch.Tensor:
    """Every row's image of `column` as float [N, channels, size, size]; errors name the row and column."""
    rows = as_row_source(source, split)
    images = []
    for index in range(len(rows)):
        value = column_value(rows[index], column)
        if value is None:
            raise DataError(f"{rows.where(index)}: no image in column {column!r} (row keys: {sorted(rows[index])})")
        try:
            images.append(image_tensor(value, size, channels, rows.base_dir))
        except MediaError as err:
            raise DataError(f"{rows.where(index)}, column {column!r}: {err.reason}") from err
    if not images:
        raise DataError(f"{rows.description}: no rows to read images from")
    return torch.stack(images)


def split_rows(images: torch.Tensor, valid_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training images, held-out images): a seeded permutation, at least one row on each side."""
    if len(images) < 2:
        raise DataError(f"an image tokenizer needs at least 2 rows (one held out), got {len(images)}")
    order = torch.from_numpy(rng_for(seed, "image_tokenizer", 0, 0, "split").permutation(len(images)))
    held_out = min(max(1, round(len(images) * valid_fraction)), len(images) - 1)
    return images[order[held_out:]], images[order[:held_out]]


def train_image_tokenizer(data: Any, out: str, tokenizer: Union[str, dict, Any] = "fsq",
                          config: Optional[TokenizerTrainConfig] = None, valid_data: Any = None,
                          log: Callable[[str], None] = print, progress: Optional[bool] = None) -> TokenizerTraining:
    """Train `tokenizer` (a registered name, {"name", **config} or a config dataclass) on the images of `data`
    (any row source) and write it to `out`; resumes from `out`.state when a run was interrupted."""
    cfg = config or TokenizerTrainConfig()
    torch.manual_seed(cfg.seed)
    model = build_image_tokenizer(tokenizer)
    if not callable(getattr(model, "reconstruction_loss", None)):
        raise ConfigError(f"image tokenizer {type(model).registered_name!r} is not trained by ofasys_fs (it has no "
                          f"reconstruction_loss): it is loaded from a file")
    images = load_images(data, cfg.column, model.image_size, model.channels)
    if valid_data is not None:
        train, valid = images, load_images(valid_data, cfg.column, model.image_size, model.channels, "valid")
    else:
        train, valid = split_rows(images, cfg.valid_fraction, cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    settings = {"training": {k: v for k, v in config_to_dict(cfg).items() if k not in RESUME_INDEPENDENT},
                "tokenizer": tokenizer_payload(model)["config"], "kind": type(model).registered_name,
                "rows": len(train), "valid_rows": len(valid)}
    start = resume(out + ".state", settings, model, optimizer, log)
    began = time.perf_counter()
    bar = tqdm(range(start, cfg.max_update), initial=start, total=cfg.max_update, desc="image tokenizer",
               unit="update", disable=None if progress is None else not progress, leave=False)
    model.train()
    for update in bar:
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * update / cfg.max_update))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch_rng = rng_for(cfg.seed, "image_tokenizer", update, 0, "batch")
        rows = torch.from_numpy(batch_rng.integers(len(train), size=cfg.batch_size))
        loss, _ = model.reconstruction_loss(train[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = update + 1
        if done % cfg.log_interval == 0 or done == cfg.max_update:
            log(f"update {done} | loss {loss.item():.5f} | lr {lr:.2e} | " + describe(evaluate(model, valid, train)))
            model.train()
        if done % cfg.save_interval == 0 and done < cfg.max_update:
            save_state(out + ".state", settings, model, optimizer, done)
    bar.close()
    model.eval().requires_grad_(False)
    summary = {**evaluate(model, valid, train), "rows": len(train), "valid_rows": len(valid),
               "updates": cfg.max_update, "seed": cfg.seed, "seconds": round(time.perf_counter() - began, 1)}
    save_image_tokenizer(model, out, info=summary)
    if os.path.exists(out + ".state"):
        os.remove(out + ".state")
    picture = reconstruction_picture(model, valid, os.path.splitext(out)[0] + "-reconstructions.png")
    log(f"wrote {out} ({model.num_codes} codes, grid {model.grid[0]}x{model.grid[1]}): {describe(summary)}; "
        f"originals vs reconstructions: {picture}")
    return TokenizerTraining(model, out, summary, picture)


@torch.no_grad()
def evaluate(model: ImageTokenizer, valid: torch.Tensor, train: torch.Tensor) -> dict:
    """Held-out reconstruction error and PSNR, the mean-image baseline's, and the codes the training rows use."""
    model.eval()
    reconstructed = reconstruct(model, valid)
    mean_image = train.mean(dim=0, keepdim=True).expand_as(valid)
    used = torch.unique(torch.cat([model.encode(train[start:start + 256]).flatten()
                                   for start in range(0, len(train), 256)])).numel()
    return {"valid_mse": float(torch.mean((reconstructed - valid) ** 2)),
            "valid_psnr": round(psnr(reconstructed, valid), 2),
            "mean_image_mse": float(torch.mean((mean_image - valid) ** 2)),
            "mean_image_psnr": round(psnr(mean_image, valid), 2), "codes_used": used, "num_codes": model.num_codes}


def describe(values: dict) -> str:
    return (f"valid mse {values['valid_mse']:.5f} psnr {values['valid_psnr']:.2f} dB (mean image "
            f"{values['mean_image_psnr']:.2f} dB) | codes used {values['codes_used']}/{values['num_codes']}")


def reconstruction_picture(model: ImageTokenizer, valid: torch.Tensor, path: str) -> str:
    shown = valid[:PICTURE_COLUMNS]
    pictures = [to_pil(image) for image in shown] + [to_pil(image) for image in reconstruct(model, shown)]
    image_grid(pictures, columns=len(shown), scale=max(1, 64 // model.image_size)).save(path)
    return path


def save_state(path: str, settings: dict, model: ImageTokenizer, optimizer: torch.optim.Optimizer, update: int) -> None:
    state = {"format": STATE_FORMAT, "update": update, "settings": settings,
             "weights": tokenizer_payload(model)["weights"], "optimizer": optimizer.state_dict()}
    atomic_write(path, lambda handle: torch.save(state, handle))


def resume(path: str, settings: dict, model: ImageTokenizer, optimizer: torch.optim.Optimizer,
           log: Callable[[str], None]) -> int:
    """The update to start from: that of an interrupted run's state file with the same settings, else 0."""
    if not os.path.exists(path):
        return 0
    state = load_torch_file(path, "image tokenizer training state")
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not an image tokenizer training state; remove it to start afresh")
    if state.get("settings") != settings:
        raise ConfigError(f"{path} is the state of an interrupted run with other settings or data "
                          f"({state.get('settings')}); give the same ones to resume it, or remove it to start afresh")
    model.load_state_dict(state["weights"])
    optimizer.load_state_dict(state["optimizer"])
    log(f"resuming from {path} at update {state['update']}")
    return int(state["update"])
