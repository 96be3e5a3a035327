"""Decoding throughput of ofasys_fs's sequence generator vs transformers' BART generate and CTranslate2
(run_scripts/bench/RESULTS.md).

Same-size models (twins.py): our model, BART, and that BART converted offline for CTranslate2 (float32
and int8 compute); our model also with its int8 linear layers (models/quantize.py). Eval mode, same
thread count, same random source batch (16 rows x 32 tokens); each in its own worker process, rounds
interleaved. All run exactly 20 decoder steps per row with no early stop: BART `min_new_tokens =
max_new_tokens = 20` with its default forced </s> at the last step; ours `min_len = max_len_b = 19` (our
lengths exclude the </s> forced at the maximum); CTranslate2 `min_decoding_length = max_decoding_length
= 20`, which forces no </s> at the maximum: it emits 20 free tokens. So BART and ours emit 19 free tokens
and a forced </s>, CTranslate2 20 free tokens: 20 decoder steps each, each step's full output projection
and softmax included. Every contender's steps per row are printed, and the run stops if they differ.
    beam:   beam 5, no-repeat-ngram 3, length penalty 1
    greedy: beam 1 (ours) / num_beams 1, do_sample False (BART) / beam_size 1 (CTranslate2), no n-gram blocking
Reports sentences/s (median [min..max] over rounds) by CPU time and by wall-clock (ab_runs.py; the RATIO
line uses CPU time with one thread per worker) and ends with
`RATIO beam_<arch>=ours/bart beam_<arch>_vs_ct2=ours/ct2 beam_<arch>_vs_ct2_int8=ours_int8/ct2_int8
greedy_<arch>=... greedy_<arch>_vs_ct2=... greedy_<arch>_vs_ct2_int8=...` (each: how many times faster).

Usage: python -m run_scripts.bench.generate_bench [--archs tiny base] [--rounds 6] [--threads N] [--clock cpu|wall]
"""
from __future__ import annotations

import contextlib
import statistics
import tempfile
from typing import Optional

import torch

from ofasys_fs.generators.sequence import SequenceGenerator
from ofasys_fs.models.cpu_linear import weights_held_constant
from ofasys_fs.models.quantize import quantize_linear_layers

from .ab_runs import Contender, interleave, machine_load, median_spread, paired_ratios
from .twins import EOS, PAD, TokenBatch, build_bart, build_ours, convert_bart_to_ctranslate2, token_id
from .versus_bart import run_command

ROWS, SOURCE_TOKENS, DECODER_STEPS = 16, 32, 20
MODES = {"beam": {"beam": 5, "no_repeat_ngram_size": 3}, "greedy": {"beam": 1, "no_repeat_ngram_size": 0}}
CALLS_PER_ROUND = {"micro": 3, "tiny": 2, "medium": 1, "base": 1}
# ratio key suffix -> (numerator, denominator) contenders; each ratio: how many times faster the numerator ran
RATIOS = {"": ("ours", "bart"), "_vs_ct2": ("ours", "ct2"), "_vs_ct2_int8": ("ours_int8", "ct2_int8")}


class Generation:
    """One `generate` closure over the whole batch; a step is one call. `read(output)` gives per row the decoder
    steps it ran and its first DECODER_STEPS - 1 (free) token ids; `compute` names the arithmetic."""

    def __init__(self, generate, read, compute: str):
        self.generate, self.read, self.compute = generate, read, compute

    def describe(self) -> dict:
        rows = self.read(self.generate())
        return {"decoder_steps": sorted({steps for steps, _ in rows}), "tokens": [tokens for _, tokens in rows],
                "compute": self.compute}

    def step(self) -> None:
        self.generate()


def ours_generation(arch: str, vocab: int, mode: str, quantize: Optional[str] = None) -> Generation:
    model = build_ours(arch, vocab).eval()
    if quantize:
        quantize_linear_layers(model, quantize)
    sample = TokenBatch.random(ROWS, SOURCE_TOKENS, 2, vocab).ours_sample()
    generator = SequenceGenerator()
    options = dict(MODES[mode], min_len=DECODER_STEPS - 1, max_len_b=DECODER_STEPS - 1, lenpen=1.0)

    def read(outputs):  # generated tokens plus the final </s>
        return [(len(best["tokens"]) + 1, best["tokens"]) for best, *_ in outputs]

    generation = Generation(lambda: generator.generate(model, sample, **options), read,
                            "int8 linear layers" if quantize else "float32")
    # as Predictor.predict decodes a run's batches: the large weights laid out for oneDNN once for all of them
    # (CTranslate2 lays out its weights when it loads the model, before any timing)
    generation.held_weights = contextlib.ExitStack()
    generation.held_weights.enter_context(weights_held_constant())
    return generation


def bart_generation(arch: str, vocab: int, mode: str) -> Generation:
    from transformers import GenerationConfig

    model = build_bart(arch, vocab).eval()
    inputs = TokenBatch.random(ROWS, SOURCE_TOKENS, 2, vocab).bart_inputs()
    config = GenerationConfig(
        num_beams=MODES[mode]["beam"], no_repeat_ngram_size=MODES[mode]["no_repeat_ngram_size"], do_sample=False,
        min_new_tokens=DECODER_STEPS, max_new_tokens=DECODER_STEPS, length_penalty=1.0, early_stopping=False,
        bos_token_id=0, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=0, forced_eos_token_id=EOS,
    )

    def generate():
        with torch.inference_mode():
            return model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                  generation_config=config)

    def read(output):  # new tokens up to and including the first </s> (the start token left out)
        return [(int((row[1:] == EOS).nonzero()[0]) + 1 if (row[1:] == EOS).any() else row.numel() - 1,
                 row[1:DECODER_STEPS].tolist()) for row in output]

    return Generation(generate, read, "float32")


def ctranslate2_generation(arch: str, vocab: int, mode: str, compute_type: str) -> Generation:
    """The BART twin (same seed, so the same weights) converted offline, decoded by CTranslate2 on CPU with
    the worker's thread count."""
    import ctranslate2

    folder = tempfile.TemporaryDirectory(prefix="ct2_twin_")
    translator = ctranslate2.Translator(convert_bart_to_ctranslate2(build_bart(arch, vocab), folder.name),
                                        device="cpu", compute_type=compute_type,
                                        intra_threads=torch.get_num_threads(), inter_threads=1)
    source = TokenBatch.random(ROWS, SOURCE_TOKENS, 2, vocab).ctranslate2_source()
    options = {"beam_size": MODES[mode]["beam"], "no_repeat_ngram_size": MODES[mode]["no_repeat_ngram_size"],
               "length_penalty": 1.0, "min_decoding_length": DECODER_STEPS, "max_decoding_length": DECODER_STEPS,
               "return_end_token": True, "return_scores": True}

    def generate():
        return translator.translate_batch(source, **options)

    def read(results):  # generated tokens, an end token included (return_end_token)
        return [(len(best), [token_id(name) for name in best[:DECODER_STEPS - 1]])
                for best in (result.hypotheses[0] for result in results)]

    generation = Generation(generate, read, f"compute_type {translator.compute_type}")
    generation.converted_model = folder  # removed with the contender
    return generation


def contenders_of(arch: str, vocab: int, mode: str, threads: int) -> list[Contender]:
    kwargs = {"arch": arch, "vocab": vocab, "mode": mode}
    return [Contender("ours", ours_generation, kwargs, threads),
            Contender("ours_int8", ours_generation, {**kwargs, "quantize": "int8"}, threads),
            Contender("bart", bart_generation, kwargs, threads),
            Contender("ct2", ctranslate2_generation, {**kwargs, "compute_type": "float32"}, threads),
            Contender("ct2_int8", ctranslate2_generation, {**kwargs, "compute_type": "int8"}, threads)]


def check_equal_steps(contenders: list[Contender], mode: str) -> None:
    """Print every contender's decoder steps per row (stop when one did not run exactly DECODER_STEPS) and, in
    greedy mode, how many free tokens the converted twins share with BART (the same weights: float32 should
    agree everywhere). Beam search ends differently on the two sides (BART's last step is the forced </s>,
    CTranslate2's a free token), so its best hypotheses may differ and are not compared."""
    for contender in contenders:
        print(f"{contender.name:>9}: decoder steps per row {contender.describe['decoder_steps']}, "
              f"{contender.describe['compute']}")
    unequal = [c.name for c in contenders if c.describe["decoder_steps"] != [DECODER_STEPS]]
    if unequal:
        raise RuntimeError(f"{unequal} did not run exactly {DECODER_STEPS} decoder steps per row: not comparable")
    tokens = {contender.name: contender.describe["tokens"] for contender in contenders}
    for name in ("ct2", "ct2_int8") if mode == "greedy" else ():
        pairs = [(a, b) for row, other in zip(tokens["bart"], tokens[name]) for a, b in zip(row, other)]
        print(f"{name:>9}: the same free token as BART at {sum(a == b for a, b in pairs)} of {len(pairs)} positions")


def bench_arch(arch: str, vocab: int, rounds: int, threads: int, clock: str) -> dict[str, float]:
    ratios = {}
    for mode in MODES:
        calls = CALLS_PER_ROUND[arch]
        print(f"\n== {arch} {mode}: {ROWS} rows x {SOURCE_TOKENS} source tokens, {DECODER_STEPS} decoder steps, "
              f"{MODES[mode]}, {calls} call(s) per round, {rounds} rounds, {threads} thread(s), ratios by "
              f"{clock} time; {machine_load()}", flush=True)
        contenders = contenders_of(arch, vocab, mode, threads)
        timings = interleave(contenders, rounds, calls, unit="call")
        for contender in contenders:
            contender.stop()
        check_equal_steps(contenders, mode)
        for clock_name, seconds in timings.items():
            speeds = ", ".join(f"{name} {median_spread([ROWS / s for s in values])}" for name, values in seconds.items())
            print(f"-- {clock_name} time: sentences/s {speeds}")
            for suffix, (faster, slower) in RATIOS.items():
                print(f"   {faster}/{slower} per round {median_spread(paired_ratios(seconds[slower], seconds[faster]))}")
        print(machine_load())
        for suffix, (faster, slower) in RATIOS.items():
            ratios[f"{mode}_{arch}{suffix}"] = statistics.median(paired_ratios(timings[clock][slower],
                                                                               timings[clock][faster]))
    return ratios


def main(argv=None) -> None:
    run_command(__doc__.splitlines()[0], CALLS_PER_ROUND, bench_arch, argv)


if __name__ == "__main__":
    main()
