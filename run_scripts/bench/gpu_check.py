"""The GPU check of the fused beam step (generators/fused_step.py), prepared for one short run on a lent GPU.

1. Equality: tests/test_fused_step.py (candidates of the Triton step vs the PyTorch step over constraint /
   soft-rule / edge cases, and end-to-end decoding with and without it); nothing else runs if it fails.
2. Step: seconds per beam step (16 rows x beam 5 x the default vocabulary, n-gram blocking and min_len on),
   fused vs reference, CUDA-synchronised, median of interleaved repeats.
3. Generation (generate_bench.py's workloads: 16 rows, 20 decoder steps; beam 5 + no-repeat-ngram 3, and
   greedy) of our model with the reference step, with the fused step, and of the same-size BART (when
   transformers is installed), interleaved rounds, sentences/s median [min..max].
4. Training (train_bench.py's step) tokens/s of our model vs BART.
Prints the device and `RATIO ...` lines; record them in run_scripts/bench/RESULTS.md ("GPU").

Usage (repository root, CUDA machine with torch, triton, pytest; transformers for the BART figures):
    python -m run_scripts.bench.gpu_check [--archs tiny base] [--rounds 5] [--skip-tests]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time

import torch

from ofasys_fs.generators import fused_step
from ofasys_fs.generators.ngram import banned_ngram_pairs
from ofasys_fs.generators.search import beam_candidates
from ofasys_fs.generators.sequence import SequenceGenerator
from ofasys_fs.generators.step import StepRules, step_log_probs

from . import train_bench
from .ab_runs import median_spread, ratio_line
from .generate_bench import DECODER_STEPS, MODES, ROWS, SOURCE_TOKENS
from .twins import EOS, PAD, TokenBatch, build_bart, build_ours, vocab_size

DEVICE = torch.device("cuda")  # --device cpu: a dry run of this script under TRITON_INTERPRET=1


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def device_seconds(function, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls, synchronised with the device."""
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return times


def interleaved(functions: dict, rounds: int, calls: int) -> dict[str, list[float]]:
    """Seconds per call of each function, one value per round (the round's mean), after one warm-up call."""
    for function in functions.values():
        function()
    results = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            results[name].append(statistics.mean(device_seconds(function, calls)))
    return results


def step_benchmark(vocab: int, rounds: int) -> dict[str, float]:
    rows, beam = ROWS, 5
    count = rows * beam
    logits = torch.randn(count, vocab, device=DEVICE) * 3
    tokens = torch.randint(4, 200, (count, 12), device=DEVICE)
    rules = StepRules(None, torch.zeros(count, dtype=torch.bool, device=DEVICE),
                      torch.ones(count, dtype=torch.bool, device=DEVICE), banned_ngram_pairs(tokens, 3),
                      torch.zeros(count, dtype=torch.bool, device=DEVICE), torch.zeros(0, dtype=torch.long, device=DEVICE))
    scores = torch.randn(rows, beam, device=DEVICE)
    first = torch.zeros(rows, dtype=torch.bool, device=DEVICE)
    seconds = interleaved({
        "reference": lambda: beam_candidates(step_log_probs(logits, rules).view(rows, beam, vocab), scores, first),
        "fused": lambda: fused_step.fused_beam_candidates(logits, rules, scores, first),
    }, rounds, 20)
    for name, values in seconds.items():
        print(f"beam step {name:>9}: {median_spread([v * 1e6 for v in values])} us")
    return {"fused_step_vs_reference": statistics.median(a / b for a, b in zip(seconds["reference"], seconds["fused"]))}


def generation_benchmark(arch: str, vocab: int, rounds: int, with_bart: bool) -> dict[str, float]:
    ours = build_ours(arch, vocab).to(DEVICE).eval()
    batch = TokenBatch.random(ROWS, SOURCE_TOKENS, 2, vocab)
    sample = batch.ours_sample()
    sample["net_input"]["encoder"][0] = {key: value.to(DEVICE) if isinstance(value, torch.Tensor) else value
                                         for key, value in sample["net_input"]["encoder"][0].items()}
    generator = SequenceGenerator()
    bart = build_bart(arch, vocab).to(DEVICE).eval() if with_bart else None
    inputs = {key: value.to(DEVICE) for key, value in batch.bart_inputs().items()}
    ratios = {}
    for mode, options in MODES.items():
        ours_options = dict(options, min_len=DECODER_STEPS - 1, max_len_b=DECODER_STEPS - 1)
        functions = {
            "ours": lambda: generator.generate(ours, sample, **ours_options),
            "ours_fused": lambda: generator.generate(ours, sample, fused_step=True, **ours_options),
        }
        if bart is not None:
            from transformers import GenerationConfig

            config = GenerationConfig(
                num_beams=options["beam"], no_repeat_ngram_size=options["no_repeat_ngram_size"], do_sample=False,
                min_new_tokens=DECODER_STEPS, max_new_tokens=DECODER_STEPS, length_penalty=1.0,
                early_stopping=False, bos_token_id=0, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=0,
                forced_eos_token_id=EOS)

            def bart_generate(config=config):
                with torch.inference_mode():
                    return bart.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                         generation_config=config)

            functions["bart"] = bart_generate
        seconds = interleaved(functions, rounds, 1)
        line = ", ".join(f"{name} {median_spread([ROWS / s for s in values])}" for name, values in seconds.items())
        print(f"{arch} {mode} on {DEVICE.type}, sentences/s: {line}")
        ratios[f"{mode}_fused_vs_reference_{arch}"] = statistics.median(
            a / b for a, b in zip(seconds["ours"], seconds["ours_fused"]))
        if bart is not None:
            ratios[f"{mode}_{arch}_{DEVICE.type}"] = statistics.median(a / b for a, b in zip(seconds["bart"], seconds["ours"]))
            ratios[f"{mode}_fused_{arch}_{DEVICE.type}"] = statistics.median(
                a / b for a, b in zip(seconds["bart"], seconds["ours_fused"]))
    return ratios


def training_benchmark(arch: str, vocab: int, rounds: int) -> dict[str, float]:
    shape = train_bench.SHAPES[arch]
    rows, _, target, _ = shape
    batch = TokenBatch.random(*shape[:3], vocab)
    ours = build_ours(arch, vocab).to(DEVICE)
    sample = batch.ours_sample()
    sample["net_input"]["encoder"][0]["tokens"] = batch.source.to(DEVICE)
    sample["net_input"]["encoder"][0]["padding_mask"] = batch.source.eq(PAD).to(DEVICE)
    sample["net_input"]["prev_output_tokens"] = batch.prev_output_tokens.to(DEVICE)
    bart = build_bart(arch, vocab).to(DEVICE)
    inputs = {key: value.to(DEVICE) for key, value in batch.bart_inputs().items()}
    steps = {"ours": train_bench.TrainSteps(ours, lambda: ours(sample)[0], batch.target.to(DEVICE),
                                            train_bench.ours_optimizer(ours)),
             "bart": train_bench.TrainSteps(bart, lambda: bart(**inputs).logits, batch.target.to(DEVICE),
                                            train_bench.bart_optimizer(bart))}
    seconds = interleaved({name: step.step for name, step in steps.items()}, rounds, 5)
    line = ", ".join(f"{name} {median_spread([rows * target / s for s in values])}" for name, values in seconds.items())
    print(f"{arch} training on {DEVICE.type} (batch {rows}, fp32), target tokens/s: {line}")
    return {f"train_tokens_per_s_{arch}_{DEVICE.type}": statistics.median(a / b for a, b in zip(seconds["bart"], seconds["ours"]))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["tiny", "base"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-tests", action="store_true", help="skip the equality tests (benchmarks only)")
    parser.add_argument("--device", default="cuda", help="cpu with TRITON_INTERPRET=1: a dry run of the script")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if not fused_step.available(DEVICE) or (DEVICE.type == "cuda" and not torch.cuda.is_available()):
        raise SystemExit("gpu_check: needs a CUDA device and Triton (or --device cpu with TRITON_INTERPRET=1)")
    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu (dry run)"
    print(f"device: {name}; torch {torch.__version__}; triton {fused_step.triton.__version__}", flush=True)
    if not args.skip_tests:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_fused_step.py"])
        if tests.returncode:
            raise SystemExit("gpu_check: the fused step does not match the reference; no benchmarks")
    with_bart = importlib.util.find_spec("transformers") is not None
    if not with_bart:
        print("transformers is not installed: no BART figures")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 for both models, as on CPU
    vocab = vocab_size()
    ratios = step_benchmark(vocab, args.rounds)
    for arch in args.archs:
        ratios.update(generation_benchmark(arch, vocab, args.rounds, with_bart))
        if with_bart:
            ratios.update(training_benchmark(arch, vocab, args.rounds))
    print(ratio_line(ratios))


if __name__ == "__main__":
    main()
