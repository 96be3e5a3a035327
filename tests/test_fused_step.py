"""generators/fused_step.py (Triton) against the PyTorch reference step: the same candidates and the same decoded
outputs. Runs on a CUDA device with Triton, or on CPU under Triton's interpreter (TRITON_INTERPRET=1, slow);
skipped otherwise (run_scripts/bench/gpu_check.py runs it on a lent GPU)."""
import os

import pytest
import torch

from ofasys_fs.generators import fused_step
from ofasys_fs.generators.ngram import banned_ngram_pairs
from ofasys_fs.generators.search import beam_candidates
from ofasys_fs.generators.step import StepRules, step_log_probs

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(
    fused_step.triton is None or not (fused_step.available(DEVICE) or INTERPRETED),
    reason="needs a CUDA device with Triton (or TRITON_INTERPRET=1)")
EOS, UNK = 2, 3


def random_case(seed: int, rows: int, beam: int, vocab: int, constraints: bool, soft: bool, edges: bool):
    """Logits, rules, cumulative scores and first-beam flags of one step, with every rule exercised on request."""
    g = torch.Generator().manual_seed(seed)
    count = rows * beam
    logits = torch.randn(count, vocab, generator=g) * 3
    constrained = None
    if constraints:
        constrained = torch.rand(count, vocab, generator=g) < 0.3
        constrained[0] = False  # a dead end: normalised over everything, then nothing allowed
        constrained[1] = False
        constrained[1, [EOS, 7]] = True  # few tokens: the soft rules must give way
    tokens = torch.randint(4, 12, (count, 9), generator=g)  # repeats, so n-gram blocking bans something
    banned = banned_ngram_pairs(tokens, 2) if soft else (torch.zeros(0, dtype=torch.long),) * 2
    below_min = torch.rand(count, generator=g) < (0.5 if soft else 0.0)
    at_max = torch.zeros(count, dtype=torch.bool)
    forced = torch.zeros(count, dtype=torch.bool)
    if edges:
        at_max[2] = True
        below_min[2] = True  # the maximum length wins over min_len
        forced[3:5] = True
        if constrained is not None:
            constrained[2, EOS] = True  # as the generator does at the maximum length
    forced_tokens = torch.randint(4, vocab, (int(forced.sum()),), generator=g)
    logits[:, [EOS, UNK]] += 6  # likely tokens, so that min_len and unkpen change the best candidates
    logits[banned[0], banned[1]] += 6  # and so does n-gram blocking
    rules = StepRules(constrained, at_max, below_min, banned, forced, forced_tokens, unkpen=0.5 if edges else 0.0)
    scores = torch.randn(rows, beam, generator=g) - 5
    scores[-1, -1] = float("-inf")  # a dead hypothesis
    first_beam_only = torch.rand(rows, generator=g) < 0.3
    to = lambda t: t.to(DEVICE) if isinstance(t, torch.Tensor) else t  # noqa: E731
    rules = StepRules(to(rules.constrained), to(at_max), to(below_min), tuple(map(to, banned)), to(forced),
                      to(forced_tokens), rules.unkpen)
    return to(logits), rules, to(scores), to(first_beam_only)


@pytest.mark.parametrize("constraints", [False, True])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("edges", [False, True])
@pytest.mark.parametrize("rows, beam, vocab", [(3, 4, 300), (6, 1, 2500)])  # 2500: several blocks, a partial one
def test_fused_candidates_equal_the_reference(constraints, soft, edges, rows, beam, vocab):
    logits, rules, scores, first_beam_only = random_case(rows * 100 + vocab, rows, beam, vocab, constraints, soft,
                                                         edges)
    expected = beam_candidates(step_log_probs(logits.clone(), rules).view(rows, beam, vocab), scores, first_beam_only)
    got = fused_step.fused_beam_candidates(logits, rules, scores, first_beam_only)
    finite = torch.isfinite(expected.scores)
    assert torch.equal(finite, torch.isfinite(got.scores))
    torch.testing.assert_close(got.scores[finite], expected.scores[finite], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got.lprobs[finite], expected.lprobs[finite], atol=1e-4, rtol=1e-5)
    assert torch.equal(got.tokens[finite], expected.tokens[finite])
    assert torch.equal(got.beams[finite], expected.beams[finite])


def test_generate_with_the_fused_step_equals_the_reference():
    """End to end on a micro model: beam search with n-gram blocking, min_len and a trie-free range constraint."""
    from ofasys_fs.generators.sequence import SequenceGenerator
    from ofasys_fs.models.generalist import GeneralistModel

    torch.manual_seed(0)
    model = GeneralistModel(arch="micro", dropout=0.0).build(300, ("text",)).to(DEVICE).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(std=0.3)
    tokens = torch.randint(4, 300, (3, 7))
    sample = {"net_input": {"encoder": [{"modality": "TEXT", "adaptor": "text", "tokens": tokens.to(DEVICE),
                                         "padding_mask": tokens.eq(1).to(DEVICE)}]}}
    options = dict(beam=4, nbest=2, max_len_b=12, min_len=3, no_repeat_ngram_size=2, constraint_range=(4, 200))
    expected = SequenceGenerator().generate(model, sample, **options)
    got = SequenceGenerator().generate(model, sample, fused_step=True, **options)
    for row_expected, row_got in zip(expected, got):
        assert [h["tokens"] for h in row_got] == [h["tokens"] for h in row_expected]
        for hyp_expected, hyp_got in zip(row_expected, row_got):
            assert hyp_got["score"] == pytest.approx(hyp_expected["score"], abs=1e-4)
