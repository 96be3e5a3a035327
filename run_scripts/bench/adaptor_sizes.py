"""Encoder tokens, adaptor parameters and one training step's time per arch and adaptor at default input sizes.

Usage (repository root; ofasys_fs installed or PYTHONPATH=.):
    python run_scripts/bench/adaptor_sizes.py [--archs micro tiny] [--batch-size 8] [--repeats 3]
Prints a Markdown table (docs/model.md, "Adaptors"). Inputs: text 32 tokens; images at the arch's
image_size for image_patch and 480 px for image_resnet (image_adaptor=image_resnet); 10 s of audio
(1000 fbank frames); 8 video frames through the arch's default image adaptor. A step = forward,
label-smoothed CE over 16 target tokens, backward.
"""
from __future__ import annotations

import argparse
import time

import torch

from ofasys_fs.criteria.label_smoothed_ce import LabelSmoothedCE
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.vocab import Vocabulary

TEXT_TOKENS, AUDIO_FRAMES, VIDEO_FRAMES, TARGET_TOKENS = 32, 1000, 8, 16


def adaptor_inputs(model: GeneralistModel, batch: int) -> dict[str, tuple[str, dict]]:
    """Adaptor name -> (description, its collated piece) at the default sizes of `model`'s config."""
    side = model.cfg.image_size
    inputs = {
        "text": (f"{TEXT_TOKENS} tokens", {"modality": "TEXT", "adaptor": "text",
                                          "tokens": torch.randint(4, 1000, (batch, TEXT_TOKENS))}),
        "image_patch": (f"{side} px", {"modality": "IMAGE", "adaptor": "image_patch",
                                       "image": torch.randn(batch, 3, side, side)}),
        "image_resnet": (f"{side} px, ResNet-{model.cfg.resnet_depth}",
                         {"modality": "IMAGE", "adaptor": "image_resnet", "image": torch.randn(batch, 3, side, side)}),
        "audio_fbank": (f"10 s ({AUDIO_FRAMES} frames)", {"modality": "AUDIO", "adaptor": "audio_fbank",
                                                          "fbank": torch.randn(batch, AUDIO_FRAMES, 80)}),
        "video_frames": (f"{VIDEO_FRAMES} frames x {side} px",
                         {"modality": "VIDEO", "adaptor": "video_frames",
                          "frames": torch.randn(batch, VIDEO_FRAMES, 3, side, side)}),
    }
    return {name: inputs[name] for name in model.adaptor_names}


def step_seconds(model: GeneralistModel, sample: dict, repeats: int) -> float:
    """Best wall time of forward + loss + backward over `repeats` steps after a warm-up step (the best, not
    the median, because other jobs on a shared machine only ever add time)."""
    criterion = LabelSmoothedCE()
    times = []
    for index in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, _, _ = criterion(model, sample)
        loss.backward()
        if index:
            times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["micro", "tiny"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    vocab = Vocabulary.default()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, CPU\n")
    print("| arch | adaptor | input | encoder tokens | adaptor params (own) | fwd+bwd step (s) |")
    print("|---|---|---|---|---|---|")
    for arch in args.archs:
        torch.manual_seed(0)
        # image_resnet needs its own config: the model's image_size becomes 480 px
        default = GeneralistModel(arch=arch).build(vocab, ["text", "image_patch", "audio_fbank", "video_frames"])
        resnet = GeneralistModel(arch=arch, image_adaptor="image_resnet").build(vocab, ["image_resnet"])
        prev = torch.randint(4, 1000, (args.batch_size, TARGET_TOKENS))
        for model in (default.train(), resnet.train()):
            for name, (description, piece) in adaptor_inputs(model, args.batch_size).items():
                report(arch, model, name, description, piece, prev, args.repeats)


def report(arch: str, model: GeneralistModel, name: str, description: str, piece: dict, prev: torch.Tensor,
           repeats: int) -> None:
    """Print one table row."""
    sample = {"net_input": {"encoder": [piece], "prev_output_tokens": prev}, "target": prev, "ntokens": prev.numel()}
    with torch.no_grad():
        tokens = model.encoder([piece]).x.size(1)
    shared = {id(p) for p in model.embed_tokens.parameters()}  # the text adaptor reuses the model's table
    params = sum(p.numel() for p in model.encoder.adaptors[name].parameters() if id(p) not in shared)
    seconds = step_seconds(model, sample, repeats)
    print(f"| {arch} | {name} | {description} | {tokens} | {params:,} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
