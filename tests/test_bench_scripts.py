"""What the benchmarks' figures rest on, without timing anything: generate_bench's five contenders run exactly the
same decoder steps and CTranslate2's converted twin decodes greedily as BART does (needs the bench extra),
scale_bench's growth classes, and train_worker's rate from its log records."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run_scripts/ is not installed with the package

from run_scripts.bench.scale_bench import growth  # noqa: E402
from run_scripts.bench.train_worker import LOG_INTERVAL, TrainingRun  # noqa: E402


@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_every_decoding_contender_runs_twenty_steps_and_the_converted_twin_decodes_as_bart(mode):
    pytest.importorskip("transformers")
    pytest.importorskip("ctranslate2")
    from run_scripts.bench import generate_bench
    from run_scripts.bench.twins import vocab_size

    vocab = vocab_size()
    contenders = {"ours": generate_bench.ours_generation("micro", vocab, mode),
                  "ours_int8": generate_bench.ours_generation("micro", vocab, mode, quantize="int8"),
                  "bart": generate_bench.bart_generation("micro", vocab, mode),
                  "ct2": generate_bench.ctranslate2_generation("micro", vocab, mode, "float32"),
                  "ct2_int8": generate_bench.ctranslate2_generation("micro", vocab, mode, "int8")}
    described = {name: contender.describe() for name, contender in contenders.items()}
    assert {name: d["decoder_steps"] for name, d in described.items()} == {name: [20] for name in contenders}
    assert all(len(row) == 19 for d in described.values() for row in d["tokens"])
    if mode == "greedy":  # beam's best hypothesis depends on the last step, a forced </s> in BART only
        assert described["ct2"]["tokens"] == described["bart"]["tokens"]  # the same weights, converted faithfully


def test_growth_classes():
    assert growth([(1, 10.0), (32, 10.5)])[1] == "flat"
    assert growth([(10_000, 1.0), (1_000_000, 90.0)])[1] == "linear"
    slope, kind = growth([(32, 1.0), (512, 256.0)])
    assert kind == "worse than linear" and slope == pytest.approx(2.0)


def test_training_rate_reads_the_records_after_the_warmup():
    run = TrainingRun.__new__(TrainingRun)  # no process: only the records
    run.records = [(3.0, {"ups": 100.0}), (20.0, {"ups": 4.0}), (21.0, {"ups": 2.0})]
    seconds = LOG_INTERVAL / 4.0 + LOG_INTERVAL / 2.0
    assert run.updates_per_second(after=10.0) == pytest.approx(2 * LOG_INTERVAL / seconds)
    with pytest.raises(RuntimeError, match="no log record after 30"):
        run.updates_per_second(after=30.0)
