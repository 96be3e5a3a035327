"""What fairseq-generate decodes with: our Predictor (the path of ofasys-generate and OFASys.inference) behind
fairseq's generator interface, so closed sets, boxes, decoder prompts and task decoding defaults apply as in
ofasys_fs, and hypotheses come back in fairseq's format."""
from __future__ import annotations

import json
from typing import Any

import torch
from fairseq.dataclass.configs import GenerationConfig as FairseqGenerationConfig

from ofasys_fs.errors import ConfigError
from ofasys_fs.generators.config import GenerationConfig
from ofasys_fs.inference.outputs import Output
from ofasys_fs.tasks.base import SPLITS
from ofasys_fs.tokenizer import EOS

# fairseq --generation flag -> our option of the same meaning
SAME_OPTIONS = {"beam": "beam", "nbest": "nbest", "max_len_a": "max_len_a", "max_len_b": "max_len_b",
                "min_len": "min_len", "lenpen": "lenpen", "unkpen": "unkpen", "temperature": "temperature",
                "no_repeat_ngram_size": "no_repeat_ngram_size", "sampling": "do_sample",
                "sampling_topk": "sampling_topk", "sampling_topp": "sampling_topp"}
# fairseq flags that change the search and have no ofasys_fs counterpart
NOT_CARRIED_OVER = ("match_source_len", "unnormalized", "replace_unk", "score_reference", "prefix_size", "constraints",
                    "diverse_beam_groups", "diverse_beam_strength", "diversity_rate", "print_alignment", "lm_path",
                    "retain_dropout", "eos_token")


def generation_options(cfg: Any, generation_args: str) -> dict:
    """Our generation options from fairseq's `generation` config and the task's --generation-args JSON. A fairseq
    flag counts as given when it differs from fairseq's default, so that unset ones leave the task's and the
    output kind's defaults in place (as ofasys-generate does)."""
    defaults = FairseqGenerationConfig()
    refused = [name for name in NOT_CARRIED_OVER if getattr(cfg, name, None) != getattr(defaults, name)]
    if refused:
        raise ConfigError(f"fairseq generation flags {['--' + name.replace('_', '-') for name in refused]} have no "
                          f"ofasys_fs counterpart (decoder prompts come from the instruction); see docs/fairseq.md")
    try:
        extra = json.loads(generation_args or "{}")
    except ValueError as err:
        raise ConfigError(f"--generation-args must be a JSON object of ofasys_fs generation options: {err}") from None
    if not isinstance(extra, dict):
        raise ConfigError(f"--generation-args must be a JSON object, got {generation_args!r}")
    given = {ours: getattr(cfg, theirs) for theirs, ours in SAME_OPTIONS.items()
             if getattr(cfg, theirs) != getattr(defaults, theirs)}
    try:
        return GenerationConfig(**{**extra, **given}).given()
    except TypeError as err:
        raise ConfigError(f"--generation-args: {err}") from None


def fairseq_hypothesis(output: Output) -> dict:
    """One hypothesis as fairseq's generators return it: tokens end with </s>, scores are natural logs (fairseq-
    generate prints them in base 2); the forced prompt is not part of the tokens, as in ofasys_fs."""
    return {"tokens": torch.tensor([*output.tokens, EOS], dtype=torch.long),
            "score": output.score if output.score is not None else 0.0,
            "positional_scores": torch.tensor(output.positional_scores, dtype=torch.float),
            "alignment": None, "output": output}


class TaskGenerator:
    """fairseq's generator interface over the `ofasys` task's Predictors: `generate(models, sample)` decodes the
    sample's rows (re-read by row index from the task's data, as ofasys-generate reads them) with our generator."""

    def __init__(self, task: Any, options: dict):
        self.task, self.options = task, options
        self.eos = EOS
        self.symbols_to_strip_from_output = {EOS}

    def generate(self, models: list, sample: dict, prefix_tokens: Any = None, constraints: Any = None,
                 **unused: Any) -> list[list[dict]]:
        if len(models) != 1:
            raise ConfigError(f"the ofasys task decodes with one model; got an ensemble of {len(models)} (--path A:B)")
        if prefix_tokens is not None or constraints is not None:
            raise ConfigError("prefix tokens and constraints come from the task's instruction, not from fairseq")
        split, ids = sample["split"], (sample["id"] - sample["id_offset"]).tolist()
        predictor = self.task.predictor(models[0], sample["task"])
        pairs = predictor.predict_indexed(self.task.rows(sample["task"], split), ids, options=self.options,
                                          batch_size=len(ids), split=split if split in SPLITS else "test")
        return [[fairseq_hypothesis(one) for one in (output.nbest or [output])] for _, output in pairs]
