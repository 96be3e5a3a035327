"""Sequence generator: beam search against brute force and greedy, caching, constraints, prefixes, lengths."""
import itertools
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ofasys_fs.data.trie import Trie
from ofasys_fs.generators import scoring
from ofasys_fs.generators.config import GenerationConfig
from ofasys_fs.generators.constraints import RepetitionGrammar, TrieConstraint, VocabularyConstraint
from ofasys_fs.generators.ngram import banned_ngram_mask
from ofasys_fs.generators.sequence import SequenceGenerator
from ofasys_fs.models.config import ModelConfig
from ofasys_fs.models.generalist import GeneralistModel
from ofasys_fs.registry import build_generator

VOCAB = 40
BOS, PAD, EOS, UNK = 0, 1, 2, 3
TEXT = range(4, 30)  # this test's layout: text ids, then 10 "bins"
BINS = range(30, 40)


class Biased(torch.nn.Module):
    """A model whose logits get a fixed bias (to make </s> or some tokens likely), optionally without cache."""

    def __init__(self, model: GeneralistModel, bias: torch.Tensor, cached: bool = True):
        super().__init__()
        self.model, self.cached = model, cached
        self.register_buffer("bias", bias)
        self.cfg, self.vocab_size = model.cfg, model.vocab_size
        self.decoder_batch_sizes = []

    def encoder(self, pieces):
        return self.model.encoder(pieces)

    def decoder(self, prev_output_tokens, encoder_out, incremental_state=None):
        self.decoder_batch_sizes.append(prev_output_tokens.size(0))
        state = incremental_state if self.cached else None
        logits, extra = self.model.decoder(prev_output_tokens, encoder_out, state)
        return logits + self.bias.to(logits.dtype), extra

    def forward(self, sample):
        logits, extra = self.model(sample)
        return logits + self.bias.to(logits.dtype), extra

    def reorder_incremental_state(self, state, new_order):
        self.model.reorder_incremental_state(state, new_order)

    def reorder_encoder_out(self, encoder_out, new_order):
        return self.model.reorder_encoder_out(encoder_out, new_order)


def make_model(seed: int = 0, bias_scale: float = 1.0, eos_bias: float = 0.0, cached: bool = True,
               **config) -> Biased:
    """A random micro model whose outputs depend on the context and vary in length (logits + a bias)."""
    torch.manual_seed(seed)
    model = GeneralistModel.from_config(ModelConfig(arch="micro", dropout=0.0, **config), VOCAB, ("text",))
    with torch.no_grad():  # the initial weights make the model repeat its last token whatever the source
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(std=0.3)
    bias = torch.randn(VOCAB) * bias_scale
    bias[EOS] = eos_bias
    return Biased(model, bias, cached).eval()


def make_sample(sources: list[list[int]], prefixes=None) -> dict:
    """Text-only encoder input (each source wrapped in <s> ... </s>), optional forced prefixes."""
    rows = [[BOS, *source, EOS] for source in sources]
    tokens = torch.full((len(rows), max(map(len, rows))), PAD)
    for index, row in enumerate(rows):
        tokens[index, :len(row)] = torch.tensor(row)
    sample = {"net_input": {"encoder": [{"modality": "TEXT", "adaptor": "text", "tokens": tokens,
                                         "padding_mask": tokens.eq(PAD)}]}}
    if prefixes is not None:
        prefix = torch.full((len(rows), max(1, max(map(len, prefixes)))), PAD)
        for index, row in enumerate(prefixes):
            prefix[index, :len(row)] = torch.tensor(row, dtype=torch.long)
        sample["prefix_tokens"] = prefix
    return sample


def row_of(sample: dict, row: int) -> dict:
    """The one-row sample of row `row`."""
    piece = sample["net_input"]["encoder"][0]
    single = {"net_input": {"encoder": [{**piece, "tokens": piece["tokens"][row:row + 1],
                                         "padding_mask": piece["padding_mask"][row:row + 1]}]}}
    if "prefix_tokens" in sample:
        single["prefix_tokens"] = sample["prefix_tokens"][row:row + 1]
    return single


@torch.no_grad()
def next_lprobs(model, sample: dict, row: int, decoder_input: list[int]) -> torch.Tensor:
    """Log-probs of the token after `decoder_input`, by a full teacher-forced forward pass of one row."""
    single = row_of(sample, row)
    single["net_input"]["prev_output_tokens"] = torch.tensor([decoder_input])
    logits, _ = model(single)
    return logits[0].float().log_softmax(-1)


def teacher_forced(model, sample: dict, row: int, prefix: list[int], tokens: list[int],
                   allowed: list[int] = None) -> list[float]:
    """Log-prob of each of `tokens` + </s> after `<s> prefix`, normalised over `allowed` when given (as the
    generator normalises over a constraint's tokens)."""
    lprobs = next_lprobs(model, sample, row, [BOS, *prefix, *tokens])
    if allowed is not None:
        lprobs = lprobs - lprobs[:, allowed].logsumexp(-1, keepdim=True)
    return [float(lprobs[len(prefix) + i, token]) for i, token in enumerate([*tokens, EOS])]


def python_banned(tokens: list[int], size: int) -> set[int]:
    if size == 0 or len(tokens) < size:
        return set()
    context = tokens[len(tokens) - size + 1:] if size > 1 else []
    return {tokens[i + size - 1] for i in range(len(tokens) - size + 1) if tokens[i:i + size - 1] == context}


def greedy(model, sample: dict, row: int, max_len: int, min_len: int = 0, ngram: int = 0) -> tuple[list[int], float]:
    """The argmax decoding loop written out (full forward per step): tokens and summed log-prob / length."""
    tokens, total = [], 0.0
    while True:
        lprobs = next_lprobs(model, sample, row, [BOS, *tokens])[-1]
        lprobs[[BOS, PAD]] = float("-inf")
        if len(tokens) < min_len:
            lprobs[EOS] = float("-inf")
        for token in python_banned(tokens, ngram):
            lprobs[token] = float("-inf")
        token = EOS if len(tokens) == max_len else int(lprobs.argmax())
        total += float(lprobs[token])
        if token == EOS:
            return tokens, total / (len(tokens) + 1)
        tokens.append(token)


SOURCES = [[5, 9, 11, 7], [13, 6], [8, 8, 20, 21, 22, 4]]


@pytest.mark.parametrize("lenpen", [0.0, 1.0])
def test_wide_beam_equals_brute_force(lenpen):
    """With a beam as wide as all sequences, every sequence over {4,5,6} of length <= 3 comes out ranked exactly."""
    model = make_model(seed=1, eos_bias=3.0)
    sample = make_sample(SOURCES[:2])
    out = SequenceGenerator().generate(model, sample, beam=40, nbest=40, max_len_b=3, min_len=0, lenpen=lenpen,
                                       constraint_range=(4, 7))
    for row in range(2):
        expected = {}
        for length in range(4):
            for tokens in itertools.product(range(4, 7), repeat=length):
                expected[tokens] = sum(teacher_forced(model, sample, row, [], list(tokens), [4, 5, 6, EOS])) / (length + 1) ** lenpen
        got = {tuple(h["tokens"]): h["score"] for h in out[row]}
        assert got.keys() == expected.keys()
        for tokens, score in expected.items():
            assert got[tokens] == pytest.approx(score, abs=1e-4)
        assert [h["score"] for h in out[row]] == sorted(got.values(), reverse=True)
        assert tuple(out[row][0]["tokens"]) == max(expected, key=expected.get)


def reference_beam(model, sample: dict, row: int, beam: int, max_len: int) -> list[tuple[list[int], float]]:
    """Plain beam search: of the 2k best extensions, </s> among the best k finishes a hypothesis, the best k
    others go on (fairseq's rules); stop at k finished once no live hypothesis ending at the next step could beat
    the k-th finished (Hugging Face's). Scores are sums / (length + 1)."""
    live, finished = [([], 0.0)], []
    for step in range(max_len + 1):
        extensions = []
        for tokens, total in live:
            lprobs = next_lprobs(model, sample, row, [BOS, *tokens])[-1]
            lprobs[[BOS, PAD]] = float("-inf")
            if step == 0:
                lprobs[EOS] = float("-inf")  # min_len = 1
            if step == max_len:
                lprobs[:EOS], lprobs[EOS + 1:] = float("-inf"), float("-inf")
            extensions += [(total + float(lprobs[t]), tokens, t) for t in range(VOCAB) if lprobs[t] > float("-inf")]
        extensions.sort(key=lambda e: -e[0])
        extensions = extensions[:2 * beam]
        finished += [(tokens, total / (len(tokens) + 1)) for total, tokens, token in extensions[:beam] if token == EOS]
        live = [(tokens + [token], total) for total, tokens, token in extensions if token != EOS][:beam]
        kth = sorted((score for _, score in finished), reverse=True)[beam - 1] if len(finished) >= beam else None
        if kth is not None and all(total / (len(tokens) + 1) <= kth for tokens, total in live):
            break
    return sorted(finished, key=lambda f: -f[1])[:beam]


def test_narrow_beam_equals_reference_beam_search():
    model = make_model(seed=14, eos_bias=2.0)
    sample = make_sample(SOURCES)
    out = SequenceGenerator().generate(model, sample, beam=3, nbest=3, max_len_b=5)
    for row in range(3):
        expected = reference_beam(model, sample, row, beam=3, max_len=5)
        assert [h["tokens"] for h in out[row]] == [tokens for tokens, _ in expected]
        assert [h["score"] for h in out[row]] == pytest.approx([score for _, score in expected], abs=1e-4)


class Memorised(Biased):
    """A model that memorised one output: on its path the next token is near certain; off it, </s> is likely."""

    def __init__(self, model: GeneralistModel, target: list[int]):
        super().__init__(model, torch.zeros(VOCAB), cached=False)
        self.target = target

    def decoder(self, prev_output_tokens, encoder_out, incremental_state=None):
        logits = torch.zeros(*prev_output_tokens.shape, VOCAB)
        for hypothesis, tokens in enumerate(prev_output_tokens[:, 1:].tolist()):
            on_path = tokens == self.target[:len(tokens)]
            following = self.target[len(tokens)] if on_path and len(tokens) < len(self.target) else EOS
            logits[hypothesis, -1, following] = 10.0
        return logits, {}


def test_a_long_confident_output_is_not_lost_to_short_finished_ones():
    """Off the memorised path every beam ends at once; the search goes on while the live path can still win."""
    target = [5, 6, 7, 8, 9, 10]
    model = Memorised(make_model(seed=16), target)
    out = SequenceGenerator().generate(model, make_sample(SOURCES[:1]), beam=3, nbest=3, max_len_b=10)
    assert out[0][0]["tokens"] == target and out[0][0]["score"] > -0.01
    assert len(out[0]) == 3 and all(h["score"] < -1.0 for h in out[0][1:])


def test_unkpen_discourages_unk():
    model = make_model(seed=15, eos_bias=-50.0)
    model.bias[UNK] += 50.0
    sample = make_sample(SOURCES)
    assert all(h["tokens"] == [UNK] * 3 for row in SequenceGenerator().generate(model, sample, max_len_b=3)
               for h in row)
    out = SequenceGenerator().generate(model, sample, max_len_b=3, unkpen=100.0)
    assert all(UNK not in h["tokens"] for row in out for h in row)


def test_beam_one_is_greedy_and_positional_scores_add_up():
    model = make_model(seed=2, eos_bias=1.0)
    sample = make_sample(SOURCES)
    out = SequenceGenerator().generate(model, sample, beam=1, max_len_b=8)
    for row in range(3):
        tokens, score = greedy(model, sample, row, max_len=8, min_len=1)
        assert out[row][0]["tokens"] == tokens
        assert out[row][0]["score"] == pytest.approx(score, abs=1e-4)
        positional = out[row][0]["positional_scores"]
        assert len(positional) == len(tokens) + 1
        assert sum(positional) / len(positional) == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize("options", [{"sampling_topk": 1}, {"sampling_topp": 1e-6}])
def test_sampling_from_the_top_token_is_greedy(options):
    model = make_model(seed=3, eos_bias=1.0)
    sample = make_sample(SOURCES)
    greedy_out = SequenceGenerator().generate(model, sample, beam=1, max_len_b=8)
    sampled = SequenceGenerator().generate(model, sample, beam=3, nbest=3, max_len_b=8, sampling=True, **options)
    for row in range(3):
        for hyp in sampled[row]:
            assert hyp["tokens"] == greedy_out[row][0]["tokens"]
            assert hyp["score"] == pytest.approx(greedy_out[row][0]["score"], abs=1e-5)


def test_sampling_is_reproducible_with_a_seed_and_varies_across_seeds():
    model = make_model(seed=4, bias_scale=0.5, eos_bias=0.5)
    sample = make_sample(SOURCES)
    run = lambda seed: [[h["tokens"] for h in row] for row in SequenceGenerator().generate(
        model, sample, beam=4, nbest=4, max_len_b=6, sampling=True, seed=seed, do_sample=True)]
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_cached_decoding_equals_full_prefix_decoding():
    sample = make_sample(SOURCES, prefixes=[[10, 11], [], [12]])
    options = dict(beam=4, nbest=4, max_len_b=7, no_repeat_ngram_size=2)
    cached = SequenceGenerator().generate(make_model(seed=5), sample, **options)
    uncached = SequenceGenerator().generate(make_model(seed=5, cached=False), sample, **options)
    for row_cached, row_uncached in zip(cached, uncached):
        assert [h["tokens"] for h in row_cached] == [h["tokens"] for h in row_uncached]
        assert [h["score"] for h in row_cached] == pytest.approx([h["score"] for h in row_uncached], abs=1e-4)


def test_forced_prefixes_of_different_lengths_are_forced_stripped_and_not_scored():
    model = make_model(seed=6, eos_bias=1.0)
    prefixes = [[10, 11, 12], [], [13]]
    sample = make_sample(SOURCES, prefixes)
    out = SequenceGenerator().generate(model, sample, beam=3, nbest=3, max_len_b=5)
    for row, prefix in enumerate(prefixes):
        assert [h["prefix"] for h in out[row]] == [prefix] * 3
        assert len({tuple(h["tokens"]) for h in out[row]}) == 3  # beams diverge after the prefix
        for hyp in out[row]:
            direct = teacher_forced(model, sample, row, prefix, hyp["tokens"])
            assert hyp["positional_scores"] == pytest.approx(direct, abs=1e-4)
            assert hyp["score"] == pytest.approx(sum(direct) / len(direct), abs=1e-4)
    # the same prefixes given as the decoder input's first tokens
    prev = torch.full((3, 5), PAD)
    for row, prefix in enumerate(prefixes):
        prev[row, :1 + len(prefix)] = torch.tensor([BOS, *prefix])
    by_lengths = {"net_input": {**sample["net_input"], "prev_output_tokens": prev},
                  "prefix_lengths": torch.tensor([len(p) for p in prefixes])}
    assert SequenceGenerator().generate(model, by_lengths, beam=3, nbest=3, max_len_b=5) == out


def test_a_prefix_with_special_tokens_is_an_error():
    sample = make_sample(SOURCES[:1])
    sample["prefix_tokens"] = torch.tensor([[PAD, 10]])
    with pytest.raises(ValueError, match="row 0"):
        SequenceGenerator().generate(make_model(), sample, beam=2)


def test_min_len_is_respected():
    model = make_model(seed=7, eos_bias=40.0)  # </s> is by far the likeliest token
    sample = make_sample(SOURCES)
    assert all(h["tokens"] == [] for row in SequenceGenerator().generate(model, sample, min_len=0, nbest=5)
               for h in row[:1])
    out = SequenceGenerator().generate(model, sample, beam=3, nbest=3, min_len=3, max_len_b=10)
    lengths = [len(h["tokens"]) for row in out for h in row]
    assert min(lengths) == 3


def test_max_len_from_source_length_and_target_positions():
    model = make_model(seed=8, eos_bias=-20.0)  # </s> never chosen freely
    sample = make_sample([[5] * 4, [6] * 10])  # 6 and 12 source positions with <s> </s>
    out = SequenceGenerator().generate(model, sample, beam=2, nbest=2, max_len_a=0.5, max_len_b=1)
    assert [{len(h["tokens"]) for h in row} for row in out] == [{4}, {7}]
    small = make_model(seed=8, eos_bias=-20.0, max_target_positions=5)
    out = SequenceGenerator().generate(small, make_sample([[5]], prefixes=[[9]]), beam=2, max_len_b=100)
    assert len(out[0][0]["tokens"]) == 3  # <s> + prefix + 3 tokens fill the 5 positions


def test_no_repeat_ngram_blocks_exactly_the_repeated_ngrams():
    model = make_model(seed=9, eos_bias=-20.0)
    model.bias[[5, 6]] += 8.0  # 5 and 6 dominate: unblocked decoding repeats them
    sample = make_sample(SOURCES)
    plain = SequenceGenerator().generate(model, sample, beam=1, max_len_b=8)
    assert any(python_banned(h["tokens"][:-1], 2) & {h["tokens"][-1]} for row in plain for h in row)
    for size in (1, 2, 3):
        out = SequenceGenerator().generate(model, sample, beam=1, max_len_b=8, no_repeat_ngram_size=size)
        for row in range(3):
            tokens = out[row][0]["tokens"]
            assert tokens == greedy(model, sample, row, max_len=8, min_len=1, ngram=size)[0]
            ngrams = [tuple(tokens[i:i + size]) for i in range(len(tokens) - size + 1)]
            assert len(ngrams) == len(set(ngrams))


def test_banned_ngram_mask_by_hand():
    tokens = torch.tensor([[7, 5, 8, 5, 9, 5], [5, 6, 5, 6, 5, 6]])
    assert banned_ngram_mask(tokens, 2, VOCAB)[0].nonzero().flatten().tolist() == [8, 9]
    assert banned_ngram_mask(tokens, 3, VOCAB)[1].nonzero().flatten().tolist() == [5]
    assert banned_ngram_mask(tokens, 1, VOCAB)[0].nonzero().flatten().tolist() == [5, 7, 8, 9]
    assert not banned_ngram_mask(tokens, 7, VOCAB).any()


def test_finished_rows_leave_the_batch_without_changing_results():
    model = make_model(seed=10, eos_bias=-3.0)
    sample = make_sample([[5], [6] * 12], prefixes=[[], [14, 15]])  # max lengths 1 and 7
    options = dict(beam=3, nbest=3, max_len_a=0.5, max_len_b=0, no_repeat_ngram_size=2)
    together = SequenceGenerator().generate(model, sample, **options)
    assert len(together[0][0]["tokens"]) == 1 and len(together[1][0]["tokens"]) > 1
    # the first step extends one hypothesis per row, then 2 x 3 beams; the finished row leaves
    assert model.decoder_batch_sizes[:2] == [2, 6] and model.decoder_batch_sizes[-1] == 3
    for row in range(2):
        alone = SequenceGenerator().generate(model, row_of(sample, row), **options)[0]
        assert [h["tokens"] for h in alone] == [h["tokens"] for h in together[row]]
        assert [h["score"] for h in alone] == pytest.approx([h["score"] for h in together[row]], abs=1e-4)


def test_score_candidates_is_the_teacher_forced_log_prob(monkeypatch):
    model = make_model(seed=11)
    prefixes = [[10], [], [12, 13]]
    sample = make_sample(SOURCES, prefixes)
    candidates = [[5], [6, 7, 8], [], [9, 5, EOS]]
    trie = Trie([*[t for t in candidate if t != EOS], EOS] for candidate in candidates)
    scores = SequenceGenerator().score_candidates(model, sample, candidates)
    assert scores.shape == (3, 4)
    for row, prefix in enumerate(prefixes):
        for column, candidate in enumerate(candidates):
            answer = [t for t in candidate if t != EOS]
            expected = 0.0
            for i, token in enumerate([*answer, EOS]):  # normalised over the answers' next tokens, as in training
                allowed = sorted(trie.allowed(answer[:i]))
                lprobs = next_lprobs(model, sample, row, [BOS, *prefix, *answer[:i]])[-1]
                expected += float(lprobs[token] - lprobs[allowed].logsumexp(-1))
            assert float(scores[row, column]) == pytest.approx(expected, abs=1e-4)
    monkeypatch.setattr(scoring, "LOGITS_PER_CALL", 1)  # one candidate per decoder call
    assert torch.allclose(SequenceGenerator().score_candidates(model, sample, candidates), scores, atol=1e-5)
    best = SequenceGenerator().generate(model, sample, exhaustive=True, candidates=candidates, nbest=2, lenpen=0.0)
    for row in range(3):
        order = scores[row].argsort(descending=True)[:2].tolist()
        assert [h["tokens"] for h in best[row]] == [[t for t in candidates[i] if t != EOS] for i in order]
        assert best[row][0]["prefix"] == prefixes[row]


def test_exhaustive_agrees_with_trie_constrained_wide_beam():
    model = make_model(seed=12, eos_bias=1.0)
    sample = make_sample(SOURCES)
    answers = [[5, 6], [5, 7, 8], [9], [10, 11, 12, 13]]
    trie = Trie([*answer, EOS] for answer in answers)
    beam = SequenceGenerator().generate(model, sample, beam=4, nbest=4, constraint_trie=trie)
    exhaustive = SequenceGenerator().generate(model, sample, exhaustive=True, candidates=answers, nbest=4)
    for row in range(3):
        assert [h["tokens"] for h in beam[row]] == [h["tokens"] for h in exhaustive[row]]
        assert [h["score"] for h in beam[row]] == pytest.approx([h["score"] for h in exhaustive[row]], abs=1e-4)


GRAMMAR_RE = re.compile(r"(b{4}t+)*")
GRAMMAR_PREFIX_RE = re.compile(r"(b{4}t+)*(b{0,4}|b{4}t*)")


def kinds(tokens: list[int]) -> str:
    return "".join("b" if t in BINS else "t" if t in TEXT else "?" for t in tokens)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), constraint=st.sampled_from(["range", "allowed", "trie", "grammar"]),
       beam=st.integers(1, 3), sampling=st.booleans(), min_len=st.integers(0, 3), ngram=st.integers(0, 2),
       prefix_length=st.integers(0, 2))
def test_constraints_are_never_violated(seed, constraint, beam, sampling, min_len, ngram, prefix_length):
    generator = torch.Generator().manual_seed(seed)
    model = make_model(seed=seed, eos_bias=float(torch.randn(1, generator=generator)) * 3)
    sample = make_sample([[5, 6, 7], [8]], prefixes=[[20] * prefix_length, [21]])
    options = dict(beam=beam, nbest=beam, sampling=sampling, seed=seed, min_len=min_len,
                   no_repeat_ngram_size=ngram, max_len_b=10)
    answers = [torch.randint(4, VOCAB, (int(n),), generator=generator).tolist()
               for n in torch.randint(1, 4, (4,), generator=generator)]
    extra = {"range": {"constraint_range": "10,20"},
             "allowed": {"allowed_tokens": torch.isin(torch.arange(VOCAB), torch.tensor(BINS))},
             "trie": {"constraint_trie": Trie([*answer, EOS] for answer in answers)},
             "grammar": {"constraints": [RepetitionGrammar([(BINS, 4), (TEXT, None)], VOCAB, max_repeat=2)]}}
    out = SequenceGenerator().generate(model, sample, **options, **extra[constraint])
    for row, hypotheses in enumerate(out):
        assert len(hypotheses) >= 1
        for hyp in hypotheses:
            tokens = hyp["tokens"]
            assert hyp["prefix"] == [[20] * prefix_length, [21]][row]
            if constraint == "range":
                assert all(10 <= t < 20 for t in tokens)
            elif constraint == "allowed":
                assert all(t in BINS for t in tokens)
            elif constraint == "trie":
                assert tokens in answers
            elif len(tokens) < 10:  # ended by </s>: a complete list of at most 2 objects
                assert GRAMMAR_RE.fullmatch(kinds(tokens)) and kinds(tokens).count("bbbb") <= 2
            else:  # cut at max_len: a valid beginning
                assert GRAMMAR_PREFIX_RE.fullmatch(kinds(tokens))


def test_repetition_grammar_states():
    grammar = RepetitionGrammar([(BINS, 4), (TEXT, None)], VOCAB, max_repeat=2)
    allowed = lambda tokens: set(grammar.allowed_after(tokens).nonzero().flatten().tolist())
    bins, text = set(BINS), set(TEXT)
    assert allowed([]) == bins | {EOS}
    assert allowed([30, 31, 32]) == bins
    assert allowed([30, 31, 32, 33]) == text
    assert allowed([30, 31, 32, 33, 5, 6]) == text | bins | {EOS}
    assert allowed([30, 31, 32, 33, 5, 34, 35, 36, 37, 6]) == text | {EOS}  # max_repeat reached
    assert allowed([30, 5]) == set()  # already broken
    with pytest.raises(ValueError, match="overlap"):
        RepetitionGrammar([(BINS, 4), (range(4, 35), None)], VOCAB)


def test_detection_grammar_uses_the_vocabulary_ranges():
    class Layout:
        def range(self, kind):
            return {"bin": BINS, "text": TEXT}[kind]

        def __len__(self):
            return VOCAB

    grammar = RepetitionGrammar.detection(Layout())
    assert [(s.ids, s.length) for s in grammar.segments] == [(frozenset(BINS), 4), (frozenset(TEXT), None)]


def test_vocabulary_and_trie_constraint_masks():
    mask = VocabularyConstraint.from_range(10, 12, VOCAB).mask([[], [3]], VOCAB, torch.device("cpu"))
    assert [row.nonzero().flatten().tolist() for row in mask] == [[EOS, 10, 11]] * 2
    strict = VocabularyConstraint(range(10, 12), VOCAB, allow_eos=False).mask([[]], VOCAB, torch.device("cpu"))
    assert strict[0].nonzero().flatten().tolist() == [10, 11]
    trie = TrieConstraint(Trie([[5, 6, EOS], [5, EOS]]))
    mask = trie.mask([[], [5], [5, 6]], VOCAB, torch.device("cpu"))
    assert [row.nonzero().flatten().tolist() for row in mask] == [[5], [EOS, 6], [EOS]]
    with pytest.raises(ValueError, match="end is exclusive"):
        VocabularyConstraint.from_range(12, 10, VOCAB)


def test_unsatisfiable_constraints_are_an_error_naming_the_row():
    model = make_model()
    nothing = torch.zeros(VOCAB, dtype=torch.bool)
    nothing[5] = True
    with pytest.raises(ValueError, match="row 0 has no hypothesis"):
        SequenceGenerator().generate(model, make_sample([[5]]), beam=2, allowed_tokens=nothing, allow_eos=False,
                                     max_len_b=10, constraint_trie=Trie([[6, EOS]]))


def test_options_are_checked_and_falsy_values_honoured():
    generator = build_generator({"name": "sequence", "beam": 3})
    assert isinstance(generator, SequenceGenerator) and generator.cfg.beam == 3
    cfg, _ = generator.resolve({"beam": 1, "min_len": 0, "lenpen": 0.0, "constraint_range": "4, 9"})
    assert (cfg.beam, cfg.min_len, cfg.lenpen, cfg.constraint_range) == (1, 0, 0.0, (4, 9))
    with pytest.raises(TypeError, match='Did you mean "beam"'):
        generator.generate(make_model(), make_sample([[5]]), bean=2)
    with pytest.raises(ValueError, match="nbest"):
        GenerationConfig(beam=2, nbest=3)
    with pytest.raises(ValueError, match="sampling_topp"):
        generator.resolve({"sampling_topp": 1.5})
    with pytest.raises(ValueError, match="candidates"):
        generator.generate(make_model(), make_sample([[5]]), exhaustive=True)
    for option, value, expected in [("beam", 2.5, "an integer"), ("min_len", True, "an integer"),
                                    ("lenpen", math.nan, "a finite number"), ("temperature", math.inf, "a finite number"),
                                    ("sampling", "yes", "true or false")]:
        with pytest.raises(ValueError, match=f"generation option {option}=.*: expected {expected}"):
            generator.resolve({option: value})


def test_bfloat16_model_decodes_with_finite_float_scores():
    model = make_model(seed=13, eos_bias=2.0).to(torch.bfloat16)
    out = SequenceGenerator().generate(model, make_sample(SOURCES), beam=2, nbest=2, max_len_b=5)
    assert all(isinstance(h["score"], float) and h["score"] > float("-inf") for row in out for h in row)
    assert model.training is False
