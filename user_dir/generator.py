"""Generator "plugin_greedy": a minimal greedy decoder over the model's incremental K/V cache."""
import dataclasses

import torch
import torch.nn.functional as F

from ofasys_fs import register_generator
from ofasys_fs.contracts import Generator

BOS, PAD, EOS = 0, 1, 2


@dataclasses.dataclass
class GreedyConfig:
    max_len: int = 32  # new tokens at most, `</s>` included


@register_generator("plugin_greedy", dataclass=GreedyConfig)
class GreedyGenerator(Generator):
    """Takes the arg-max token at every step until `</s>` (no forced prefixes, no constraints)."""

    def __init__(self, cfg: GreedyConfig):
        self.cfg = cfg

    @torch.no_grad()
    def generate(self, model, sample: dict, max_len: int = None, **options) -> list[list[dict]]:
        encoder_out = model.encoder(sample["net_input"]["encoder"])
        batch = encoder_out.x.size(0)
        tokens = torch.full((batch, 1), BOS, dtype=torch.long, device=encoder_out.x.device)
        scores = torch.zeros(batch, 0, device=tokens.device)
        done = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
        state: dict = {}
        for _ in range(max_len or self.cfg.max_len):
            logits, _ = model.decoder(tokens, encoder_out, incremental_state=state)
            lprobs = F.log_softmax(logits[:, -1].float(), dim=-1)
            best, step_scores = lprobs.max(-1)[1], lprobs.max(-1)[0]
            best = best.masked_fill(done, PAD)
            tokens = torch.cat([tokens, best[:, None]], dim=1)
            scores = torch.cat([scores, step_scores.masked_fill(done, 0.0)[:, None]], dim=1)
            done |= best.eq(EOS)
            if bool(done.all()):
                break
        return [[self.hypothesis(tokens[i, 1:], scores[i])] for i in range(batch)]

    @staticmethod
    def hypothesis(tokens: torch.Tensor, scores: torch.Tensor) -> dict:
        ends = tokens.eq(EOS).nonzero()
        length = int(ends[0]) + 1 if len(ends) else len(tokens)
        positional = scores[:length]
        return {"tokens": tokens[:length].tolist(), "score": float(positional.mean()),
                "positional_scores": positional.tolist()}
