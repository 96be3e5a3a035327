"""Generator "code_sampling": outputs of a fixed number of codes (IMAGE outputs, docs/image_generation.md).

Per row, `beam` candidates are sampled code by code (temperature, top-k, top-p) within the allowed ids,
optionally with classifier-free guidance: the next-code log-probabilities are uncond + guidance_scale *
(cond - uncond), where uncond is the model given the empty prompt (guidance.py, made from the collated sample, so
any caller of `generate` gets it). The candidates are then ordered by a registered reranker
(default `likelihood`: the model's own mean log-likelihood of the candidate given the row, without
temperature, filtering or guidance; OFA reranked with CLIP, which cannot be had offline).
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..guidance import drop_prompt, guided
from ..registry import build_reranker, register_generator
from ..tokenizer import BOS
from .config import GenerationConfig
from .constraints import token_mask
from .search import NEG_INF, top_k_top_p
from .sequence import SequenceGenerator, eval_mode, hypothesis


@register_generator("code_sampling", dataclass=GenerationConfig)
class CodeSampling(SequenceGenerator):
    """Samples `beam` candidates of exactly max_len_b codes per row, reranks them and returns the n best.

    Takes the sequence generator's options; `allowed_tokens` (the code ids) and a fixed length (min_len =
    max_len_b, max_len_a = 0) are required, as the IMAGE output's decoding plan sets them.
    """

    guidance = True

    def generate(self, model, sample: dict, **options) -> list[list[dict]]:
        cfg, objects = self.resolve(options)
        if objects.get("allowed_tokens") is None:
            raise ConfigError("code_sampling needs allowed_tokens (the code ids); an IMAGE output's decoding plan "
                              "gives them")
        if cfg.max_len_a != 0 or cfg.min_len != cfg.max_len_b:
            raise ConfigError(f"code_sampling generates a fixed number of codes: expected min_len = max_len_b and "
                              f"max_len_a = 0, got min_len={cfg.min_len}, max_len_a={cfg.max_len_a}, "
                              f"max_len_b={cfg.max_len_b}")
        allowed = token_mask(objects["allowed_tokens"], model.vocab_size, "allowed tokens")
        with eval_mode(model):
            tokens, positional = sample_codes(model, sample, cfg, allowed, cfg.max_len_b)
        rows, count = sample["id"].numel(), tokens.size(0) // sample["id"].numel()
        candidates = [[hypothesis(tokens[row * count + k].tolist(), [], float(positional[row * count + k].mean()),
                                  positional[row * count + k].tolist()) for k in range(count)] for row in range(rows)]
        return [row[:cfg.nbest] for row in rerank(cfg.reranker, model, sample, candidates)]


def sample_codes(model, sample: dict, cfg: GenerationConfig, allowed: torch.Tensor,
                 length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [R * k, length], their log-probs under the unguided model [R * k, length]); k = beam when
    sampling, 1 when greedy. The k candidates of a row share its encoder output."""
    encoder = sample["net_input"]["encoder"]
    encoder_out = model.encoder(encoder)
    device = encoder_out.x.device
    guide = model.encoder(drop_prompt(encoder)) if cfg.guidance_scale != 1 else None
    per_row = cfg.beam if cfg.do_sample else 1
    tokens = torch.full((encoder_out.x.size(0) * per_row, 1), BOS, dtype=torch.long, device=device)
    disallowed = ~allowed.to(device)
    generator = None
    if cfg.sampling_seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.sampling_seed)
    states, chosen = ({}, {}), []
    for _ in range(length):
        cond = next_log_probs(model, tokens, encoder_out, states[0], disallowed)
        scores = cond
        if guide is not None:
            uncond = next_log_probs(model, tokens, guide, states[1], disallowed)
            scores = guided(cond, uncond, cfg.guidance_scale).masked_fill(disallowed, NEG_INF)
        scores = top_k_top_p((scores / cfg.temperature).log_softmax(dim=-1), cfg.sampling_topk, cfg.sampling_topp)
        if cfg.do_sample:
            step = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)
        else:
            step = scores.argmax(dim=-1, keepdim=True)
        chosen.append(cond.gather(1, step))
        tokens = torch.cat([tokens, step], dim=1)
    return tokens[:, 1:].cpu(), torch.cat(chosen, dim=1).cpu()


def next_log_probs(model, tokens: torch.Tensor, encoder_out, state: dict, disallowed: torch.Tensor) -> torch.Tensor:
    logits, _ = model.decoder(tokens, encoder_out, state)
    return logits[:, -1].float().masked_fill(disallowed, NEG_INF).log_softmax(dim=-1)


def rerank(name: str, model, sample: dict, candidates: list[list[dict]]) -> list[list[dict]]:
    """Each row's candidates ordered by the reranker's scores, best first (ties keep the sampling order)."""
    scores = build_reranker(name).scores(model, sample, candidates)
    if len(scores) != len(candidates) or any(len(s) != len(c) for s, c in zip(scores, candidates)):
        raise ValueError(f"reranker {name!r} returned {[len(s) for s in scores]} scores for rows of "
                         f"{[len(c) for c in candidates]} candidates")
    return [[candidate for _, _, candidate in sorted(zip((-float(s) for s in row_scores), range(len(row)), row))]
            for row_scores, row in zip(scores, candidates)]
