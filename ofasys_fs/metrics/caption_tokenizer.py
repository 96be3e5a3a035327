"""Caption tokenisation for the COCO metrics (CIDEr-D, BLEU): Stanford's PTB tokenizer through
pycocoevalcap when Java is installed, else a pure-Python imitation of it for caption text.

Both give what pycocoevalcap's scorers expect: lowercased PTB tokens joined by single spaces, with
pycocoevalcap's punctuation tokens removed. Where the imitation differs from Java is listed in
docs/metrics.md.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from collections.abc import Sequence
from typing import Optional

from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, PTBTokenizer

# Stanford's escapes for brackets; after -lowerCase they are no longer in PUNCTUATIONS, so they stay.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_BRACKET_TOKENS = frozenset(_BRACKETS.values())
_TYPOGRAPHIC = str.maketrans(
    {"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "…": "...", "–": "--", "—": "--"}
)
# Characters that always end up as (filtered) quote, ellipsis, dash or semicolon tokens.
_ALWAYS_REMOVED = re.compile(r'"|`|;|\.\.\.+|--+')
_SEPARATE_SYMBOLS = set("%*\\")
_COMMA_OR_COLON_OUTSIDE_NUMBERS = re.compile(r"(?<!\d)[,:]|[,:](?!\d)")
_INNER_N = re.compile(r"(?i)(?<=\w)'n'(?=\w)")
_CONTRACTION_SUFFIX = re.compile(r"(?i)(n't|'s|'m|'re|'ve|'d|'ll)$")
_KEPT_LEADING_APOSTROPHE = re.compile(r"(?i)'(s|m|d|re|ve|ll|em|n'?|tis|twas)\b|'\d")
_LETTER_ABBREVIATION = re.compile(r"[^\W\d_](\.[^\W\d_])*")
# Words the Stanford tokenizer (CoreNLP 3.4.1) keeps together with a final period, as observed.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof inc co corp ltd vs etc mt ft ave rd blvd gen sen rep gov capt col lt sgt "
    "adm dept univ est cf al bros messrs hon rev pres sq calif fla va "
    "jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri".split()
)
_SPECIAL_SPLITS = {
    "cannot": ["can", "not"],
    "gonna": ["gon", "na"],
    "gotta": ["got", "ta"],
    "wanna": ["wan", "na"],
    "gimme": ["gim", "me"],
    "lemme": ["lem", "me"],
    "'tis": ["'t", "is"],
    "'twas": ["'t", "was"],
}


def java_available() -> bool:
    """Whether a `java` executable is on PATH (needed by the Stanford PTB tokenizer)."""
    return shutil.which("java") is not None


def tokenize_captions(texts: Sequence[str], use_java: Optional[bool] = None) -> list[str]:
    """Each caption as lowercased PTB tokens without punctuation, joined by single spaces.

    use_java: True = Stanford PTB via pycocoevalcap (error when Java is missing), False = the Python
    imitation, None = Java when `java` is on PATH.
    """
    one_line = [" ".join(text.split()) for text in texts]
    if use_java is None:
        use_java = java_available()
    if not use_java:
        return [python_ptb_tokenize(text) for text in one_line]
    if not java_available():
        raise RuntimeError(
            "use_java=True but no `java` executable is on PATH; install Java or pass use_java=False"
        )
    return _java_ptb_tokenize(one_line)


def _java_ptb_tokenize(texts: list[str]) -> list[str]:
    if not texts:
        return []
    try:
        tokenized = PTBTokenizer().tokenize({row: [{"caption": text}] for row, text in enumerate(texts)})
    except OSError as err:
        raise RuntimeError(
            f"the Java PTB tokenizer of pycocoevalcap could not run ({err}); pass use_java=False"
        ) from err
    lines = [tokenized[row][0] for row in range(len(texts)) if row in tokenized]
    if len(lines) != len(texts) or (any(texts) and not any(lines)):
        raise RuntimeError(
            f"the Java PTB tokenizer of pycocoevalcap returned {len(lines)} lines for {len(texts)} captions "
            f"(or only empty ones); see its error output above, or pass use_java=False"
        )
    return lines


def python_ptb_tokenize(text: str) -> str:
    """Pure-Python imitation of pycocoevalcap's PTB tokenisation of one caption (Java-free fallback)."""
    text = _INNER_N.sub(" 'n' ", text.translate(_TYPOGRAPHIC).replace("&amp;", "&"))
    text = _ALWAYS_REMOVED.sub(" ", text)
    text = _COMMA_OR_COLON_OUTSIDE_NUMBERS.sub(" ", text)
    text = "".join(f" {_BRACKETS[c]} " if c in _BRACKETS else f" {c} " if _is_symbol(c) else c for c in text)
    chunks = text.split()
    tokens = []
    for index, chunk in enumerate(chunks):
        following = chunks[index + 1] if index + 1 < len(chunks) else ""
        tokens.extend(_chunk_tokens(chunk, following))
    return " ".join(t for t in (token.lower() for token in tokens) if t and t not in PUNCTUATIONS)


def _is_symbol(char: str) -> bool:
    return char in _SEPARATE_SYMBOLS or unicodedata.category(char).startswith("S")


def _chunk_tokens(chunk: str, following: str) -> list[str]:
    """PTB tokens of one whitespace-free chunk; `following` is the next chunk (for sentence ends)."""
    if chunk in _BRACKET_TOKENS:
        return [chunk]
    head: list[str] = []
    tail: list[str] = []
    while chunk:
        if chunk[0] == "'" and not _KEPT_LEADING_APOSTROPHE.match(chunk):
            chunk = chunk[1:]
        elif chunk[0] in "!?":
            run = re.match(r"[!?]+", chunk).group()
            head.append(run)
            chunk = chunk[len(run) :]
        elif chunk[0] in "-." and not chunk[1:2].isdigit():
            chunk = chunk[1:]
        elif re.match(r"#\d", chunk):
            head.append("#")
            chunk = chunk[1:]
        else:
            break
    while chunk:
        run = re.search(r"[!?]+$", chunk)
        contraction = _CONTRACTION_SUFFIX.search(chunk)
        if run:
            tail.insert(0, run.group())
            chunk = chunk[: run.start()]
        elif chunk[-1] in "'-" and chunk.lower() != "'n'":
            chunk = chunk[:-1]
        elif chunk[-1] == "." and not _keeps_period(chunk, following):
            chunk = chunk[:-1]
        elif contraction and contraction.start() > 0:
            tail.insert(0, contraction.group())
            chunk = chunk[: contraction.start()]
        else:
            break
    return head + _SPECIAL_SPLITS.get(chunk.lower(), [chunk]) + tail


def _keeps_period(chunk: str, following: str) -> bool:
    """Whether a chunk ending in '.' is an abbreviation that keeps its period (as Stanford decides)."""
    word = chunk[:-1].lower()
    if word in _ABBREVIATIONS or ("." in word and _LETTER_ABBREVIATION.fullmatch(word)):
        return True
    if _LETTER_ABBREVIATION.fullmatch(word):
        return not following[:1].isupper()
    if word == "no":
        return following[:1].isdigit()
    return False
