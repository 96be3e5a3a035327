"""Decoding throughput of ofasys_fs's sequence generator vs transformers' BART generate (run_scripts/bench/RESULTS.md).

Same-size models (twins.py), eval mode, fp32, same thread count, same random source batch (16 rows x 32
tokens); each in its own worker process, rounds interleaved. Both run exactly 20 decoder steps per row
with no early stop: BART `min_new_tokens = max_new_tokens = 20` with its default forced </s> at the last
step, ours `min_len = max_len_b = 19` (our lengths exclude the </s> forced at the maximum). So both emit
19 free tokens and a forced </s>.
    beam:   beam 5, no-repeat-ngram 3, length penalty 1
    greedy: beam 1 (ours) / num_beams 1, do_sample False (BART), no n-gram blocking
Reports sentences/s (median [min..max] over rounds) by CPU time and by wall-clock (ab_runs.py; the RATIO
line uses CPU time with one thread per worker) and ends with
`RATIO beam_<arch>=ours/bart greedy_<arch>=ours/bart ...`.

Usage: python -m run_scripts.bench.generate_bench [--archs tiny base] [--rounds 6] [--threads N] [--clock cpu|wall]
"""
from __future__ import annotations

import statistics

import torch

from ofasys_fs.generators.sequence import SequenceGenerator

from .ab_runs import Contender, interleave, machine_load, median_spread
from .twins import EOS, PAD, TokenBatch, build_bart, build_ours
from .versus_bart import ours_over_bart, run_command

ROWS, SOURCE_TOKENS, DECODER_STEPS = 16, 32, 20
MODES = {"beam": {"beam": 5, "no_repeat_ngram_size": 3}, "greedy": {"beam": 1, "no_repeat_ngram_size": 0}}
CALLS_PER_ROUND = {"micro": 3, "tiny": 2, "medium": 1, "base": 1}


class Generation:
    """One `generate` closure over the whole batch; a step is one call."""

    def __init__(self, generate, output_lengths):
        self.generate, self.output_lengths = generate, output_lengths

    def describe(self) -> dict:
        return {"output_lengths": sorted(set(self.output_lengths(self.generate())))}

    def step(self) -> None:
        self.generate()


def ours_generation(arch: str, vocab: int, mode: str) -> Generation:
    model = build_ours(arch, vocab).eval()
    sample = TokenBatch.random(ROWS, SOURCE_TOKENS, 2, vocab).ours_sample()
    generator = SequenceGenerator()
    options = dict(MODES[mode], min_len=DECODER_STEPS - 1, max_len_b=DECODER_STEPS - 1, lenpen=1.0)

    def lengths(outputs):  # generated tokens plus the final </s>
        return [len(hypotheses[0]["tokens"]) + 1 for hypotheses in outputs]

    return Generation(lambda: generator.generate(model, sample, **options), lengths)


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

    def lengths(output):  # new tokens up to and including the first </s> (the start token left out)
        return [int((row[1:] == EOS).nonzero()[0]) + 1 if (row[1:] == EOS).any() else row.numel() - 1
                for row in output]

    return Generation(generate, lengths)


def bench_arch(arch: str, vocab: int, rounds: int, threads: int, clock: str) -> dict[str, float]:
    ratios = {}
    for mode in MODES:
        calls = CALLS_PER_ROUND[arch]
        print(f"\n== {arch} {mode}: {ROWS} rows x {SOURCE_TOKENS} source tokens, {DECODER_STEPS} decoder steps, "
              f"{MODES[mode]}, {calls} call(s) per round, {rounds} rounds, {threads} thread(s), fp32, ratios by "
              f"{clock} time; {machine_load()}", flush=True)
        kwargs = {"arch": arch, "vocab": vocab, "mode": mode}
        contenders = [Contender("ours", ours_generation, kwargs, threads),
                      Contender("bart", bart_generation, kwargs, threads)]
        timings = interleave(contenders, rounds, calls, unit="call")
        for contender in contenders:
            contender.stop()
            print(f"{contender.name:>5}: output lengths with </s> {contender.describe['output_lengths']}")
        for clock_name, seconds in timings.items():
            speeds = ", ".join(f"{name} {median_spread([ROWS / s for s in values])}" for name, values in seconds.items())
            print(f"-- {clock_name} time: sentences/s {speeds}; ours/bart per round "
                  f"{median_spread(ours_over_bart(seconds))}")
        print(machine_load())
        ratios[f"{mode}_{arch}"] = statistics.median(ours_over_bart(timings[clock]))
    return ratios


def main(argv=None) -> None:
    run_command(__doc__.splitlines()[0], CALLS_PER_ROUND, bench_arch, argv)


if __name__ == "__main__":
    main()
