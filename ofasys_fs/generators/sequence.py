"""The batched sequence generator (docs/design.md §11): beam search or sampling with constraints, prefixes and n-best."""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional

import torch

from ..contracts import Generator
from ..errors import ConfigError
from ..models.cpu_linear import weights_held_constant
from ..registry import did_you_mean, register_generator
from ..tokenizer import BOS, EOS
from .config import OPTION_ALIASES, GenerationConfig
from .constraints import Constraint, TrieConstraint, VocabularyConstraint
from .ngram import banned_ngram_pairs
from .prefix import forced_prefixes
from .scoring import candidate_log_probs, checked_candidates, score_candidates
from .search import NEG_INF, Candidates, beam_candidates, sample_candidates, split_candidates
from .step import StepRules, step_log_probs

# Per-call options that are objects rather than config values (docs/generation.md).
OBJECT_OPTIONS = ("allowed_tokens", "constraint_trie", "constraints", "candidates")


@contextlib.contextmanager
def eval_mode(model):
    """Decode without dropout and gradients, restoring the model's training flag afterwards; the weights stay
    the same throughout, so large ones are laid out for the CPU linear kernel once per call (models/cpu_linear.py)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), weights_held_constant():
            yield
    finally:
        model.train(was_training)


@register_generator("sequence", dataclass=GenerationConfig)
class SequenceGenerator(Generator):
    """Beam search / sampling over GeneralistModel with incremental decoding (fairseq's SequenceGenerator).

    `generate(model, sample, **options)` returns per row the n-best hypotheses, best first:
    {"tokens", "prefix", "score", "positional_scores", "alignment"} (docs/generation.md).
    """

    def __init__(self, cfg: Optional[GenerationConfig] = None):
        self.cfg = cfg if cfg is not None else GenerationConfig()

    def resolve(self, options: dict) -> tuple[GenerationConfig, dict]:
        """(config with the per-call overrides and every unset option at its fallback, object options);
        unknown names are an error, and a bad value is named as the caller wrote it."""
        fields = {field.name for field in dataclasses.fields(GenerationConfig)}
        overrides, objects, written = {}, {}, {}
        for name, value in options.items():
            field = OPTION_ALIASES.get(name, name)
            if field in fields:
                overrides[field], written[field] = value, name
            elif name in OBJECT_OPTIONS:
                objects[name] = value
            else:
                known = sorted(fields | set(OBJECT_OPTIONS))
                raise TypeError(f'sequence generator has no option "{name}".{did_you_mean(name, known)} '
                                f"Options: {', '.join(known)}")
        try:
            cfg = dataclasses.replace(self.cfg, **overrides)
        except ConfigError as err:
            message = str(err)
            for field, name in written.items():
                message = message.replace(f"generation option {field}=", f"generation option {name}=")
            raise ConfigError(message) from None
        return cfg.resolved(), objects

    def generate(self, model, sample: dict, **options) -> list[list[dict]]:
        """n-best hypotheses per row of `sample` (collated format, docs/internals.md)."""
        cfg, objects = self.resolve(options)
        if cfg.guidance_scale != 1:
            raise ConfigError(f"guidance_scale={cfg.guidance_scale} applies to IMAGE and MOTION outputs (generators "
                              f"code_sampling and ddim), not to this text-like decoder")
        with eval_mode(model):
            if cfg.exhaustive:
                return best_candidates(model, sample, cfg, objects)
            return BeamDecoding(model, sample, cfg, build_constraints(cfg, objects, model)).run()

    def score_candidates(self, model, sample: dict, candidates: list[list[int]]) -> torch.Tensor:
        """FloatTensor [B, C]: teacher-forced log-prob sum of each candidate plus </s> per row."""
        with eval_mode(model):
            return score_candidates(model, sample, candidates)


def build_constraints(cfg: GenerationConfig, objects: dict, model) -> list[Constraint]:
    """The constraint objects of one call: range, allowed tokens, trie, plus any given Constraint objects."""
    vocab_size = model.vocab_size
    constraints = []
    if cfg.constraint_range is not None:
        constraints.append(VocabularyConstraint.from_range(*cfg.constraint_range, vocab_size, cfg.allow_eos))
    if objects.get("allowed_tokens") is not None:
        constraints.append(VocabularyConstraint(objects["allowed_tokens"], vocab_size, cfg.allow_eos))
    if objects.get("constraint_trie") is not None:
        constraints.append(TrieConstraint(objects["constraint_trie"]))
    for constraint in objects.get("constraints") or ():
        if not isinstance(constraint, Constraint):
            raise TypeError(f"generation option constraints: expected Constraint objects (e.g. RepetitionGrammar), "
                            f"got {type(constraint).__name__}")
        constraints.append(constraint)
    if objects.get("candidates") is not None:
        raise ValueError("generation option candidates is only used with exhaustive=True")
    return constraints


def best_candidates(model, sample: dict, cfg: GenerationConfig, objects: dict) -> list[list[dict]]:
    """Exhaustive closed-set decoding: every candidate scored, the n best per row (same score as beam search)."""
    if objects.get("candidates") is None:
        raise ValueError("generation option exhaustive=True needs candidates=[token id lists] (the closed set)")
    candidates = checked_candidates(objects["candidates"], model.vocab_size)
    token_lprobs = candidate_log_probs(model, sample, candidates).cpu()
    lengths = torch.tensor([len(candidate) + 1 for candidate in candidates])  # with </s>
    scores = token_lprobs.sum(dim=-1) / lengths.float().pow(cfg.lenpen)
    prefix, prefix_lengths = forced_prefixes(sample, scores.size(0))
    return [[
        hypothesis(candidates[index], prefix[row, :int(prefix_lengths[row])].tolist(), float(scores[row, index]),
                   token_lprobs[row, index, :int(lengths[index])].tolist())
        for index in scores[row].argsort(descending=True, stable=True)[:cfg.nbest].tolist()
    ] for row in range(scores.size(0))]


def hypothesis(tokens: list[int], prefix: list[int], score: float, positional_scores: list[float]) -> dict:
    """One output hypothesis (fairseq's dict; tokens without the prefix and </s>)."""
    return {"tokens": [int(t) for t in tokens], "prefix": prefix, "score": score,
            "positional_scores": positional_scores, "alignment": None}


class BeamDecoding:
    """One `generate` call: the active hypotheses of the rows not finished yet, advanced one token per step.

    Hypotheses are flat [R * k] (row-major); rows whose search ended leave the batch, and the encoder
    output and incremental state are reordered to the remaining hypotheses.
    """

    def __init__(self, model, sample: dict, cfg: GenerationConfig, constraints: list[Constraint]):
        self.model, self.cfg, self.constraints = model, cfg, constraints
        self.beam = cfg.beam
        encoder_out = model.encoder(sample["net_input"]["encoder"])
        self.device = encoder_out.x.device
        batch = encoder_out.x.size(0)
        prefix, prefix_lengths = forced_prefixes(sample, batch)
        self.prefix, self.prefix_lengths = prefix.to(self.device), prefix_lengths.to(self.device)
        self.max_lens = self.max_lengths(encoder_out, prefix_lengths.to(self.device))
        self.start = int(prefix_lengths.min()) if batch else 0
        self.encoder_out = encoder_out  # one row per active row: its hypotheses share it (docs/generation.md)
        self.fused_step = None
        if cfg.fused_step and not cfg.do_sample:
            from . import fused_step  # imports Triton: only when asked for

            self.fused_step = fused_step if fused_step.available(self.device) else None
        # hypotheses per active row: beam search's first step extends one (the beams would be identical copies)
        self.width = 1 if self.fused_step is None and not cfg.do_sample else self.beam
        first = torch.cat([torch.full((batch, 1), BOS, device=self.device), self.prefix[:, :self.start]], dim=1)
        self.tokens = first.repeat_interleave(self.width, dim=0)  # [N, 1 + step]: <s>, prefix, generated
        self.scores = torch.zeros(batch * self.width, device=self.device)
        self.positional = torch.zeros(batch * self.width, 0, device=self.device)  # log-probs from step `start` on
        self.rows = torch.arange(batch, device=self.device)  # original row of each active row
        self.rows_of = self.rows.repeat_interleave(self.width)  # original row of each active hypothesis
        self.finished_count = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.kth_finished = torch.full((batch,), NEG_INF, device=self.device)  # k-th best finished score per row
        self.same_beams = torch.arange(self.beam, device=self.device).expand(batch, self.beam)  # no reordering
        self.state: dict = {}
        self.finished: list[list[dict]] = [[] for _ in range(batch)]
        self.generator = None
        if cfg.do_sample and cfg.sampling_seed is not None:
            self.generator = torch.Generator(device=self.device).manual_seed(cfg.sampling_seed)

    def max_lengths(self, encoder_out, prefix_lengths: torch.Tensor) -> torch.Tensor:
        """Generated tokens allowed per row (</s> excluded): max_len_a * source + max_len_b, within the model."""
        source_lengths = (~encoder_out.padding_mask).sum(dim=1)
        wanted = (self.cfg.max_len_a * source_lengths).long() + self.cfg.max_len_b
        positions = getattr(getattr(self.model, "cfg", None), "max_target_positions", None)
        if positions is None:
            return wanted
        room = positions - 1 - prefix_lengths
        if (room < 0).any():
            row = int((room < 0).nonzero()[0])
            raise ValueError(f"row {row}: its forced prefix of {int(prefix_lengths[row])} tokens does not fit the "
                             f"model's max_target_positions={positions} (with <s>)")
        return torch.minimum(wanted, room)

    def run(self) -> list[list[dict]]:
        step = self.start
        while self.rows.numel():
            self.advance(step)
            step += 1
        for row, hypotheses in enumerate(self.finished):
            if not hypotheses:
                raise ValueError(f"generation: row {row} has no hypothesis: the constraints allowed no complete "
                                 f"output (check allowed_tokens / constraint_range / constraint_trie / constraints)")
        return [sorted(row, key=lambda h: -h["score"])[:self.cfg.nbest] for row in self.finished]

    def advance(self, step: int) -> None:
        """Choose the token at output position `step` (after <s>) for every active hypothesis."""
        logits, _ = self.model.decoder(self.tokens, self.encoder_out, self.state)
        logits = logits[:, -1].float()
        if self.cfg.temperature != 1.0:
            logits = logits / self.cfg.temperature
        rules = self.rules(step, logits.size(-1))
        rows, beam = self.rows.numel(), self.beam
        scores = self.scores.view(rows, self.width)
        first_beam_only = step <= self.prefix_lengths[self.rows]
        if self.fused_step is not None:
            candidates = self.fused_step.fused_beam_candidates(logits, rules, scores, first_beam_only)
        else:
            lprobs = step_log_probs(logits, rules).view(rows, self.width, -1)
            if self.cfg.do_sample:
                candidates = sample_candidates(lprobs, scores, self.cfg.sampling_topk, self.cfg.sampling_topp,
                                               self.generator)
            else:
                candidates = beam_candidates(lprobs, scores, first_beam_only, beam)
        finishing, survivors = split_candidates(candidates, beam, EOS)
        self.finish(step, candidates, finishing)
        self.keep(step, survivors)

    def rules(self, step: int, vocab_size: int) -> StepRules:
        """The hard and soft rules of every active hypothesis at output position `step`."""
        rows_of = self.rows_of
        generated = step - self.prefix_lengths[rows_of]  # free tokens so far; negative inside the prefix
        at_max = generated >= self.max_lens[rows_of]
        constrained = None
        if self.constraints:
            constrained = torch.ones(generated.numel(), vocab_size, dtype=torch.bool, device=self.device)
            self.apply_constraints(constrained, generated)
            constrained[at_max, EOS] = True  # </s> is forced at the maximum length
        banned = (generated.new_zeros(0), generated.new_zeros(0))
        if self.cfg.no_repeat_ngram_size:
            banned = banned_ngram_pairs(self.tokens[:, 1:], self.cfg.no_repeat_ngram_size)
        forced = generated < 0
        forced_tokens = self.prefix[rows_of[forced], step] if forced.any() else generated.new_zeros(0)
        return StepRules(constrained, at_max, generated < self.cfg.min_len, banned, forced, forced_tokens,
                         self.cfg.unkpen)

    def apply_constraints(self, allowed: torch.Tensor, generated: torch.Tensor) -> None:
        """AND every constraint's mask into `allowed` for the live hypotheses past their prefix."""
        free = ((generated >= 0) & torch.isfinite(self.scores)).nonzero().squeeze(1)
        if not self.constraints or not free.numel():
            return
        starts = (self.tokens.size(1) - generated[free]).tolist()
        tokens = self.tokens[free].tolist()
        sequences = [row[start:] for row, start in zip(tokens, starts)]
        for constraint in self.constraints:
            allowed[free] &= constraint.mask(sequences, allowed.size(1), allowed.device)

    def finish(self, step: int, candidates: Candidates, finishing: torch.Tensor) -> None:
        """Store the finishing (</s>) candidates as hypotheses of their rows (one device transfer per step)."""
        row, column = finishing.nonzero().unbind(dim=1)
        if not row.numel():
            return
        hyps = row * self.width + candidates.beams[row, column]
        originals = self.rows[row]
        self.finished_count.index_add_(0, originals, torch.ones_like(originals))
        fields = (originals, self.prefix_lengths[originals], self.tokens[hyps, 1:], self.positional[hyps],
                  candidates.lprobs[row, column], candidates.scores[row, column])
        for original, prefix_length, sequence, positional, eos_lprob, total in zip(*(f.tolist() for f in fields)):
            length = step - prefix_length + 1  # generated tokens with </s>
            self.finished[original].append(hypothesis(
                sequence[prefix_length:], sequence[:prefix_length], total / length**self.cfg.lenpen,
                positional[prefix_length - self.start:] + [eos_lprob],
            ))
        for original in set(originals.tolist()):
            scores = sorted((h["score"] for h in self.finished[original]), reverse=True)
            if len(scores) >= self.beam:
                self.kth_finished[original] = scores[self.beam - 1]

    def keep(self, step: int, survivors: Candidates) -> None:
        """Advance to the survivors and drop rows that are done: no live hypothesis, or `beam` finished and
        (in beam search) none of the live ones could still beat the k-th finished by ending at the next step."""
        open_rows = self.finished_count[self.rows] < self.beam
        if not self.cfg.do_sample:
            ending = (step - self.prefix_lengths[self.rows] + 2).clamp(min=1).float()  # with the next </s>
            best = survivors.scores.max(dim=1).values / ending**self.cfg.lenpen
            open_rows |= best > self.kth_finished[self.rows]
        active = open_rows & torch.isfinite(survivors.scores).any(dim=1)
        rows = self.rows.numel()
        source = (torch.arange(rows, device=self.device).unsqueeze(1) * self.width + survivors.beams)[active].view(-1)
        self.tokens = torch.cat([self.tokens[source], survivors.tokens[active].view(-1, 1)], dim=1)
        self.scores = survivors.scores[active].view(-1)
        self.positional = torch.cat([self.positional[source], survivors.lprobs[active].view(-1, 1)], dim=1)
        all_active = bool(active.all())
        if not (all_active and bool((survivors.beams == self.same_beams[:rows]).all())):
            self.model.reorder_incremental_state(self.state, source)
        if not all_active:
            self.encoder_out = self.model.reorder_encoder_out(self.encoder_out, active.nonzero().squeeze(1))
            self.rows = self.rows[active]
        if not all_active or self.width != self.beam:
            self.width = self.beam
            self.rows_of = self.rows.repeat_interleave(self.beam)
