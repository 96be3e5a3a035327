"""Training throughput of GeneralistModel vs transformers' BART of identical dimensions (run_scripts/bench/RESULTS.md).

A step, the same for both: forward in train mode (dropout 0.1), label-smoothed cross-entropy (0.1, fp32,
summed over the target tokens), backward, AdamW (lr 1e-4) as each toolkit builds it by default: ours through
ofasys_fs's optimizer factory, BART as transformers' Trainer does on torch >= 2.8 (`adamw_torch_fused`); both
take torch's fused kernel. Same random batch, fp32, same thread count; each model in
its own worker process, rounds interleaved. Reports target tokens/s (median [min..max] over rounds) by
CPU time and by wall-clock (ab_runs.py; the RATIO line uses CPU time with one thread per worker), MFU
against a large fp32 matmul timed in the same rounds, and each process's peak RSS.

MFU divides by the faster of two large fp32 matmuls timed in each round: torch.mm (PyTorch's BLAS, MKL) and
oneDNN (which our model's linear layers use on CPU, ofasys_fs/models/cpu_linear.py). It counts the model
FLOPs both models share (identical dimensions), training = 3 x forward:
    forward = per encoder layer  B*S*(8*d^2 + 4*d*f) + 4*B*S^2*d
            + per decoder layer  B*T*(8*d^2 + 4*d^2 + 4*d*f) + 4*B*S*d^2 + 4*B*T^2*d + 4*B*T*S*d
            + output projection  2*B*T*d*V
(d model width, f FFN width, V vocabulary, B rows, S source and T target tokens; the four projections of
self-attention, the query/output projections on T and key/value projections on S of cross-attention, the
FFN, QK^T and AV at full length since the causal mask is applied as a mask. Embedding lookups, layer
norms, softmax and our position-bias projections are not counted.)

Usage: python -m run_scripts.bench.train_bench [--archs tiny base] [--rounds 6] [--threads N] [--clock cpu|wall]
Ends with `RATIO train_tokens_per_s_<arch>=ours/bart ... mfu_<arch>=... peak_rss_<arch>=ours/bart ...`.
"""
from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from ofasys_fs.models.cpu_linear import ONEDNN, kernel_choice, onednn_matmul
from ofasys_fs.optim.adamw import AdamW, AdamWConfig

from .ab_runs import Contender, interleave, machine_load, median_spread
from .twins import PAD, TokenBatch, arch_config, build_bart, build_ours
from .versus_bart import ours_over_bart, run_command

# Per arch: rows, source tokens, target tokens, timed steps per round. Small enough for a 2-core CPU.
SHAPES = {"micro": (16, 64, 32, 4), "tiny": (16, 64, 32, 3), "medium": (8, 64, 32, 2), "base": (8, 64, 32, 1)}
MATMUL_SIDE = 2048
MATMULS = ("torch.mm", "onednn") if ONEDNN else ("torch.mm",)


def forward_flops(arch: str, batch: int, source: int, target: int, vocab: int) -> int:
    """Forward matmul FLOPs of one batch (the formula of the module docstring)."""
    cfg = arch_config(arch)
    d, f = cfg.embed_dim, cfg.ffn_embed_dim
    encoder = batch * source * (8 * d * d + 4 * d * f) + 4 * batch * source * source * d
    decoder = (batch * target * (12 * d * d + 4 * d * f) + 4 * batch * source * d * d
               + 4 * batch * target * target * d + 4 * batch * target * source * d)
    return cfg.encoder_layers * encoder + cfg.decoder_layers * decoder + 2 * batch * target * d * vocab


class TrainSteps:
    """forward -> label-smoothed CE -> backward -> AdamW, timed per step."""

    def __init__(self, model: torch.nn.Module, forward, target: torch.Tensor, optimizer: torch.optim.Optimizer):
        self.model, self.forward, self.target = model.train(), forward, target
        self.optimizer = optimizer

    def describe(self) -> dict:
        return {"parameters": sum(p.numel() for p in self.model.parameters()), "linear": kernel_choice()}

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.forward()
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), self.target.reshape(-1),
                               ignore_index=PAD, label_smoothing=0.1, reduction="sum")
        loss.backward()
        self.optimizer.step()


def ours_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW as ofasys_fs builds it by default (the fused kernel wherever torch has one)."""
    return AdamW(AdamWConfig(lr=1e-4)).build(model)


def bart_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW as transformers' Trainer builds it by default on torch >= 2.8 (optim="adamw_torch_fused")."""
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)


def ours_training(arch: str, vocab: int, shape: tuple) -> TrainSteps:
    batch = TokenBatch.random(*shape[:3], vocab)
    model = build_ours(arch, vocab)
    sample = batch.ours_sample()
    return TrainSteps(model, lambda: model(sample)[0], batch.target, ours_optimizer(model))


def bart_training(arch: str, vocab: int, shape: tuple) -> TrainSteps:
    batch = TokenBatch.random(*shape[:3], vocab)
    model = build_bart(arch, vocab)
    inputs = batch.bart_inputs()
    return TrainSteps(model, lambda: model(**inputs).logits, batch.target, bart_optimizer(model))


class Matmul:
    """A large fp32 matmul, by torch.mm (PyTorch's BLAS) or oneDNN: the attainable FLOP rate MFU divides by."""

    def __init__(self, side: int, kernel: str):
        self.a, self.b = torch.randn(side, side), torch.randn(side, side)
        self.multiply = torch.mm if kernel == "torch.mm" else onednn_matmul

    def describe(self) -> dict:
        return {"side": self.a.size(0)}

    def step(self) -> None:
        self.multiply(self.a, self.b)


def bench_arch(arch: str, vocab: int, rounds: int, threads: int, clock: str) -> dict[str, float]:
    shape = SHAPES[arch]
    rows, source, target, steps = shape
    print(f"\n== {arch}: batch {rows} x (source {source}, target {target}) tokens, {steps} step(s) per round, "
          f"{rounds} rounds, {threads} thread(s), fp32, ratios by {clock} time; {machine_load()}", flush=True)
    contenders = [Contender("ours", ours_training, {"arch": arch, "vocab": vocab, "shape": shape}, threads),
                  Contender("bart", bart_training, {"arch": arch, "vocab": vocab, "shape": shape}, threads),
                  *(Contender(kernel, Matmul, {"side": MATMUL_SIDE, "kernel": kernel}, threads) for kernel in MATMULS)]
    timings = interleave(contenders, rounds, steps)
    for contender in contenders:
        contender.stop()
    ours, bart = contenders[0], contenders[1]
    step_flops = 3 * forward_flops(arch, rows, source, target, vocab)
    tokens = rows * target
    mfu = {}
    for clock_name, seconds in timings.items():
        rates = {kernel: [2 * MATMUL_SIDE**3 / s for s in seconds[kernel]] for kernel in MATMULS}
        peak = [max(values) for values in zip(*rates.values())]
        print(f"-- {clock_name} time")
        for contender in (ours, bart):
            name = contender.name
            mfu[clock_name, name] = [step_flops / s / p for s, p in zip(seconds[name], peak)]
            print(f"{name:>5}: {median_spread([tokens / s for s in seconds[name]])} target tokens/s, "
                  f"MFU {median_spread(mfu[clock_name, name])}")
        for kernel, values in rates.items():
            print(f"matmul {MATMUL_SIDE}^3 fp32 by {kernel}: {median_spread([v / 1e9 for v in values])} GFLOP/s")
        print(f"peak (the faster per round): {median_spread([p / 1e9 for p in peak])} GFLOP/s")
        print(f"ours/bart tokens/s per round: {median_spread(ours_over_bart(seconds))}")
    for contender in (ours, bart):
        print(f"{contender.name:>5}: {contender.describe['parameters']:,} parameters, peak RSS "
              f"{contender.peak_rss_mb:.0f} MiB (+{contender.peak_rss_mb - contender.rss_after_imports_mb:.0f} "
              f"over the imports)")
    print(f"our linear layers: {ours.describe['linear']}")
    print(f"model FLOPs per step {step_flops / 1e9:.2f} G; {machine_load()}")
    growth = (ours.peak_rss_mb - ours.rss_after_imports_mb) / (bart.peak_rss_mb - bart.rss_after_imports_mb)
    speed_ratio = ours_over_bart(timings[clock])
    return {f"train_tokens_per_s_{arch}": statistics.median(speed_ratio),
            f"mfu_{arch}": statistics.median(mfu[clock, "ours"]), f"mfu_bart_{arch}": statistics.median(mfu[clock, "bart"]),
            f"peak_rss_{arch}": ours.peak_rss_mb / bart.peak_rss_mb, f"rss_growth_{arch}": growth}


def main(argv=None) -> None:
    run_command(__doc__.splitlines()[0], SHAPES, bench_arch, argv)


if __name__ == "__main__":
    main()
