"""VQA answer normalisation following the rules of the official VQA evaluation (Antol et al. 2015):
punctuation, periods, number words to digits, articles, contractions."""

from __future__ import annotations

import itertools
import re

_PUNCTUATION = ';/[]"{}()=+\\_->@`,?!<'
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
# Contractions restored when written without (some of) their apostrophes; ones whose bare form is a
# common word ("it's"/its, "we'll"/well, "i'd"/id, "we're"/were, ...) are left out on purpose.
_CANONICAL_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't
he'd he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll let's ma'am mightn't
mightn't've might've mustn't must've needn't not've o'clock oughtn't shan't she'd've she's should've
shouldn't shouldn't've somebody'd somebody'd've somebody'll somebody's someone'd someone'd've
someone'll someone's something'd something'd've something'll that's there'd there'd've there're
there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're
what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're why's
won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()


def _apostrophe_variants(word: str) -> list[str]:
    """Spellings of a contraction with one or more of its apostrophes left out."""
    parts = word.split("'")
    variants = []
    for keep in itertools.product(("'", ""), repeat=len(parts) - 1):
        if "".join(keep) != "'" * (len(parts) - 1):
            variants.append(parts[0] + "".join(k + p for k, p in zip(keep, parts[1:])))
    return variants


_CONTRACTIONS = {variant: word for word in _CANONICAL_CONTRACTIONS for variant in _apostrophe_variants(word)}


def strip_punctuation(answer: str) -> str:
    """The official punctuation rule: a mark touching a space, or any mark in a text with a digit-comma-digit,
    is deleted; other marks become a space. Then periods not followed by a digit are deleted."""
    delete_all = _DIGIT_COMMA_DIGIT.search(answer) is not None
    text = answer
    for mark in _PUNCTUATION:
        touches_space = f"{mark} " in answer or f" {mark}" in answer
        text = text.replace(mark, "" if delete_all or touches_space else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", text)


def normalize_vqa_answer(answer: str) -> str:
    """An answer in the official VQA comparison form, e.g. "Two dogs." -> "2 dogs", "dont" -> "don't"."""
    words = strip_punctuation(" ".join(answer.split())).lower().split()
    words = [_NUMBER_WORDS.get(word, word) for word in words]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)
