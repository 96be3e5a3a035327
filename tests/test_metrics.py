"""Evaluation metrics: COCO scorers against pycocoevalcap, PTB fallback against Java, hand-computed fixtures."""

import math
import random
import shutil

import pytest
import sacrebleu
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from ofasys_fs import contracts
from ofasys_fs.metrics import caption_tokenizer
from ofasys_fs.metrics.box_iou import box_iou
from ofasys_fs.metrics.caption_tokenizer import python_ptb_tokenize, tokenize_captions
from ofasys_fs.metrics.metric_inputs import MetricInputError
from ofasys_fs.metrics.vqa_answer import normalize_vqa_answer
from ofasys_fs.metrics.vqa_score import vqa_soft_score
from ofasys_fs.registry import METRIC_REGISTRY, build_metric

HAS_JAVA = shutil.which("java") is not None
needs_java = pytest.mark.skipif(not HAS_JAVA, reason="no java: the Stanford PTB tokenizer cannot run")
ALL_METRICS = "cider bleu rouge sacrebleu wer cer accuracy exact_match vqa_score acc_iou mcc".split()

# Caption parts in the style of COCO, with the punctuation, contractions and numbers PTB treats specially.
SUBJECTS = (
    "A man|a woman's dog|Two dogs|The children|a cat|An old man's hat|3 zebras|Some people|"
    "a black-and-white cow|the kids'|A young girl"
).split("|")
VERBS = (
    "is sitting on|are playing with|isn't near|stands next to|can't reach|is holding|looks at|rides|"
    "doesn't like|walks past|it's on"
).split("|")
OBJECTS = (
    'a red couch|the table|a large pizza (with cheese)|a 1,000-piece puzzle|a bowl of fruit|the beach at 10:30|'
    '3.5 slices of cake|a $5 bill|50% of the cake|its owner\'s bike|a "stop" sign|the U.S. flag|Mr. Smith|'
    "an umbrella"
).split("|")
EXTRAS = (
    "||, while smiling| -- outdoors|; nearby| in the grass|: a snack| and they're happy| (in the park)|, i think"
).split("|")
# Harder strings on which the Python tokenizer was seen to agree with Java.
TRICKY_CAPTIONS = [
    "A colour photo of a grey theatre.", "Hello!!! What?! ok;fine:then", "e.g. i.e. etc. vs. a.m. p.m.",
    "black-and-white photo at 10:30 on 3.5 acres of 1,000 trees", "two  spaces\tand tab", "café naïve résumé",
    "a+b=c ~tilde^caret|pipe\\backslash", "He'd said I'll we've 'tis", "the x. The end", "MR. SMITH at St. Paul's.",
]  # fmt: skip
ENDINGS = [".", "", " .", "!", "?", "...", " !"]


def random_caption(rng):
    return (
        " ".join([rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)])
        + rng.choice(EXTRAS)
        + rng.choice(ENDINGS)
    )


def random_caption_set(rng):
    """Predictions and references (a string or a list of 1-5 strings per row) for 2-6 images."""
    rows = rng.randint(2, 6)
    predictions = [random_caption(rng) for _ in range(rows)]
    references = [[random_caption(rng) for _ in range(rng.randint(1, 5))] for _ in range(rows)]
    return predictions, [refs[0] if len(refs) == 1 and rng.random() < 0.5 else refs for refs in references]


def coco_inputs(predictions, references, tokenize):
    """pycocoevalcap's {id: [caption]} dicts, each caption tokenised on its own by `tokenize`."""
    reference_lists = [refs if isinstance(refs, list) else [refs] for refs in references]
    gold = {row: [tokenize(r) for r in refs] for row, refs in enumerate(reference_lists)}
    return gold, {row: [tokenize(p)] for row, p in enumerate(predictions)}


def test_every_metric_is_registered_with_its_direction():
    for name in ALL_METRICS:
        metric = build_metric(name)
        assert isinstance(metric, contracts.Metric) and name in METRIC_REGISTRY
        assert metric.higher_is_better == (name not in ("wer", "cer"))


def test_python_tokenizer_on_captions_checked_against_java():
    # Expected strings are what pycocoevalcap's Java PTBTokenizer printed for these inputs.
    assert (
        python_ptb_tokenize("A man's dog, running (fast) on the grass.")
        == "a man 's dog running -lrb- fast -rrb- on the grass"
    )
    assert (
        python_ptb_tokenize("I'm sure they're gonna go, can't they? cannot!")
        == "i 'm sure they 're gon na go ca n't they can not"
    )
    assert (
        python_ptb_tokenize("“Quoted” text, don’t -- $5.00 for 50% off #1")
        == "quoted text do n't $ 5.00 for 50 % off # 1"
    )
    assert python_ptb_tokenize("Mr. Smith at the U.S. flag... the dogs' bowls; 10:30, 1,000!!!") == (
        "mr. smith at the u.s. flag the dogs bowls 10:30 1,000 !!!"
    )
    assert (
        python_ptb_tokenize("'Rock'n'roll' at 5 a.m. (gotta go) -lol-")
        == "rock 'n' roll at 5 a.m. -lrb- got ta go -rrb- lol"
    )
    assert tokenize_captions(["  Two\ndogs\t.", ""], use_java=False) == ["two dogs", ""]


@needs_java
def test_python_tokenizer_agrees_with_java_ptb_on_50_captions():
    rng = random.Random(7)
    captions = [random_caption(rng) for _ in range(50)] + TRICKY_CAPTIONS
    assert tokenize_captions(captions, use_java=False) == tokenize_captions(captions, use_java=True)


def test_tokenizer_choice_follows_java_availability(monkeypatch):
    monkeypatch.setattr(caption_tokenizer, "java_available", lambda: False)
    monkeypatch.setattr(
        caption_tokenizer, "_java_ptb_tokenize", lambda texts: pytest.fail("java must not run")
    )
    assert tokenize_captions(["A Dog."]) == ["a dog"]
    with pytest.raises(RuntimeError, match="use_java=False"):
        tokenize_captions(["A Dog."], use_java=True)


def test_cider_and_bleu_equal_pycocoevalcap_on_50_random_caption_sets():
    rng = random.Random(0)
    cider = build_metric({"name": "cider", "use_java": False})
    bleu = build_metric({"name": "bleu", "use_java": False})
    for _ in range(50):
        predictions, references = random_caption_set(rng)
        gold, results = coco_inputs(predictions, references, python_ptb_tokenize)
        expected_cider, _ = Cider().compute_score(gold, results)
        expected_bleu, _ = Bleu(4).compute_score(gold, results, verbose=0)
        assert cider.compute(predictions, references)["cider"] == pytest.approx(expected_cider, abs=1e-6)
        scores = bleu.compute(predictions, references)
        assert list(scores) == ["bleu_4", "bleu_1", "bleu_2", "bleu_3"]
        assert [scores[f"bleu_{n}"] for n in (1, 2, 3, 4)] == pytest.approx(expected_bleu, abs=1e-6)


@needs_java
def test_cider_and_bleu_with_java_ptb_equal_pycocoevalcap_pipeline():
    predictions, references = random_caption_set(random.Random(3))
    reference_lists = [refs if isinstance(refs, list) else [refs] for refs in references]
    tokenized = PTBTokenizer().tokenize(
        {
            **{("p", i): [{"caption": p}] for i, p in enumerate(predictions)},
            **{("r", i): [{"caption": r} for r in refs] for i, refs in enumerate(reference_lists)},
        }
    )
    gold = {i: tokenized[("r", i)] for i in range(len(predictions))}
    results = {i: tokenized[("p", i)] for i in range(len(predictions))}
    expected_cider, _ = Cider().compute_score(gold, results)
    expected_bleu, _ = Bleu(4).compute_score(gold, results, verbose=0)
    cider = build_metric({"name": "cider", "use_java": True}).compute(predictions, references)
    bleu = build_metric({"name": "bleu", "use_java": True}).compute(predictions, references)
    assert cider["cider"] == pytest.approx(expected_cider, abs=1e-6)
    assert bleu["bleu_4"] == pytest.approx(expected_bleu[3], abs=1e-6)


def test_rouge_against_hand_computation():
    scores = build_metric("rouge").compute(
        ["The cat sat on the mat", "A dog runs"],
        ["the cat is on the mat", ["a cat sleeps", "The dog runs fast"]],
    )
    # Row 0: 6 tokens each. Unigram overlap the x2, cat, on, mat = 5 -> F1 5/6. Bigrams: 3 of 5 shared
    # (the cat, on the, the mat) -> 3/5. LCS "the cat on the mat" = 5 -> 5/6.
    # Row 1, best reference "the dog runs fast": unigrams dog, runs: P 2/3, R 2/4 -> F1 4/7; bigram
    # "dog runs": P 1/2, R 1/3 -> 2/5; LCS "dog runs" = 2 -> 4/7. ("a cat sleeps" only gives 1/3, 0, 1/3.)
    assert list(scores) == ["rouge_l", "rouge_1", "rouge_2"]
    assert scores["rouge_l"] == pytest.approx((5 / 6 + 4 / 7) / 2)
    assert scores["rouge_1"] == pytest.approx((5 / 6 + 4 / 7) / 2)
    assert scores["rouge_2"] == pytest.approx((3 / 5 + 2 / 5) / 2)


def test_sacrebleu_handles_reference_lists_of_different_lengths():
    metric = build_metric("sacrebleu")
    hypotheses = ["the cat sat on the mat today", "a dog runs in the park"]
    references = ["the cat sat on a mat today", "the dog runs in a park"]
    single = metric.compute(hypotheses, references)
    expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert single["sacrebleu"] == pytest.approx(expected)
    # A duplicated reference changes no clipped count, so the score must stay the same.
    padded = metric.compute(hypotheses, [["the cat sat on a mat today"], ["the dog runs in a park"] * 2])
    assert padded["sacrebleu"] == pytest.approx(expected)
    assert metric.compute(hypotheses, [[h] for h in hypotheses])["sacrebleu"] == pytest.approx(100.0)


def test_wer_and_cer_against_hand_computation():
    wer = build_metric("wer").compute(
        ["The cat sat on mat.", "a dog barked loudly"], ["the cat sat on the mat", ["A dog barks."]]
    )
    # Row 0: one deleted "the" (1 edit, 6 words); row 1: barked->barks and inserted "loudly" (2 edits, 3 words).
    assert wer == {"wer": pytest.approx(3 / 9)}
    cer = build_metric("cer").compute(["kitten", "Ab c"], ["sitting", "abc!"])
    # kitten->sitting: k->s, e->i, +g = 3 edits of 7 chars; "ab c" vs "abc": the space is 1 edit of 3.
    assert cer == {"cer": pytest.approx(4 / 10)}


def test_accuracy_is_case_insensitive_and_exact_match_is_strict():
    predictions, references = ["Yes ", "a  red car", "Blue"], ["yes", ["A Red Car", "red car"], "green"]
    assert build_metric("accuracy").compute(predictions, references) == {"accuracy": pytest.approx(2 / 3)}
    assert build_metric("exact_match").compute(predictions, references) == {"exact_match": pytest.approx(0.0)}
    assert build_metric("exact_match").compute(["a  red car"], [["x", "a red car"]]) == {"exact_match": 1.0}


@pytest.mark.parametrize(
    "answer, normalized",
    [
        ("Two dogs.", "2 dogs"),
        ("it's a cat", "it's cat"),
        ("dont know", "don't know"),
        ("Couldnt've", "couldn't've"),
        ("1,000 people", "1000 people"),
        ("red-white", "red white"),
        ("red - white", "red white"),
        ("Yes!", "yes"),
        ("3.5 m.", "3.5 m"),
        ("The  Ten\tapples", "10 apples"),
        ("none", "0"),
    ],
)
def test_vqa_answer_normalisation(answer, normalized):
    assert normalize_vqa_answer(answer) == normalized


def test_vqa_soft_score_averages_leave_one_out_subsets():
    answers = ["2", "two", "2.", "3", "3", "3", "4", "several", "many", "3"]
    # Three answers normalise to "2". Leaving one of them out leaves 2 matches (2/3); leaving out any of
    # the other seven leaves 3 matches (1). Mean: (3 * 2/3 + 7 * 1) / 10 = 0.9.
    assert vqa_soft_score("Two", answers) == pytest.approx(0.9)
    # One match: 0 when it is left out, 1/3 in the nine other subsets -> 0.3.
    assert vqa_soft_score("4", answers) == pytest.approx(0.3)
    assert vqa_soft_score("A cat", ["cat"]) == 1.0
    scores = build_metric("vqa_score").compute(["Two", "4", "zebra"], [answers, answers, answers])
    assert scores == {"vqa_score": pytest.approx((0.9 + 0.3 + 0.0) / 3)}


def test_box_iou_and_acc_iou():
    assert box_iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)
    assert box_iou([5, 5, 0, 0], [0, 0, 5, 5]) == 0.0  # inverted corners: area 0
    assert box_iou([0, 0, 4, 4], [6, 0, 9, 4]) == 0.0  # disjoint in x
    assert box_iou([0, 0, 4, 4], [0, 6, 4, 9]) == 0.0  # disjoint in y
    predictions = [[0, 0, 10, 10], (0, 0, 10, 10), [0, 0, 2, 2]]
    references = [[0, 0, 10, 8], [5, 5, 15, 15], [[10, 10, 20, 20], [0, 0, 2, 4]]]
    # IoUs 80/100, 25/175, and best of the two references 4/8: two reach 0.5.
    scores = build_metric("acc_iou").compute(predictions, references)
    assert list(scores) == ["acc_iou", "mean_iou"]
    assert scores["acc_iou"] == pytest.approx(2 / 3)
    assert scores["mean_iou"] == pytest.approx((0.8 + 1 / 7 + 0.5) / 3)
    strict = build_metric({"name": "acc_iou", "threshold": 0.9})
    assert strict.compute(predictions, references)["acc_iou"] == 0.0
    with pytest.raises(MetricInputError, match="row 1.*4 finite numbers"):
        build_metric("acc_iou").compute([[0, 0, 1, 1], [0, 0, 1]], [[0, 0, 1, 1], [0, 0, 1, 1]])


def test_mcc_against_hand_computation():
    mcc = build_metric("mcc")
    # Binary: TP=1, TN=2, FP=1, FN=0 -> (1*2 - 1*0) / sqrt((1+1)(1+0)(2+1)(2+0)) = 2 / sqrt(12).
    assert mcc.compute(["yes", "no", "Yes", "no"], ["yes", "no", "no", "no"]) == {
        "mcc": pytest.approx(2 / math.sqrt(12))
    }
    # Three classes, 3 of 6 correct, every class predicted and true twice:
    # (3*6 - (2*2)*3) / sqrt((36 - 12)(36 - 12)) = 6 / 24.
    assert mcc.compute(list("abcabc"), list("abcbca"))["mcc"] == pytest.approx(0.25)
    assert mcc.compute([1, 0, 1, 0], [0, 1, 0, 1])["mcc"] == pytest.approx(-1.0)
    assert mcc.compute(["a", "a", "a"], ["a", "b", "a"])["mcc"] == 0.0  # one predicted class: defined as 0


@pytest.mark.parametrize("name", ALL_METRICS)
def test_empty_and_missing_inputs_are_clear_errors(name):
    metric = build_metric(name)
    with pytest.raises(MetricInputError, match=f'"{name}": no predictions'):
        metric.compute([], [])
    good = [0, 0, 1, 1] if name == "acc_iou" else "a dog"
    with pytest.raises(MetricInputError, match="prediction of row 1 is None"):
        metric.compute([good, None], [good, good])
    with pytest.raises(MetricInputError, match="2 predictions but 1 references"):
        metric.compute([good, good], [good])


def test_malformed_text_rows_name_the_row():
    with pytest.raises(MetricInputError, match="prediction of row 0 is int"):
        build_metric("rouge").compute([3], ["a"])
    with pytest.raises(MetricInputError, match="row 1 has an empty list of references"):
        build_metric("cider").compute(["a", "b"], ["a", []])
    with pytest.raises(MetricInputError, match="row 0 has 2 references; this metric takes exactly one"):
        build_metric("wer").compute(["a"], [["a", "b"]])
