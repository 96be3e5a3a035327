"""Real newswire text: the Reuters-21578 articles that Debian's package `r-cran-tm` ships (50 on corporate
acquisitions, 20 on crude oil, in tm/texts/acq and tm/texts/crude), unpacked into a cache folder once
(debian_package.py; no R needed). Each paragraph is a row labelled with its article's topic; an article's
paragraphs all go to one split. Training repeats the crude paragraphs to match the acq ones; the held-out
splits have as many of each."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from .data_common import SPLITS, SplitSizes, rng_for, write_split
from .debian_package import package_files

PACKAGE = "r-cran-tm"
TEXTS_IN_PACKAGE = Path("usr/lib/R/site-library/tm/texts")
TOPICS = ("acq", "crude")
ARTICLE_SHARES = {"train": 0.6, "valid": 0.1, "test": 0.3}
MIN_PARAGRAPH_WORDS = 5


def ensure_tm_texts(cache_dir: Path) -> Path:
    """The folder tm/texts of r-cran-tm, downloaded and unpacked into `cache_dir` on first use."""
    return package_files(PACKAGE, str(TEXTS_IN_PACKAGE), cache_dir, TOPICS)


def paragraphs(article: Path) -> list[str]:
    """The body paragraphs of one Reuters XML file (the closing "Reuter" sign-off dropped)."""
    body = ElementTree.parse(article).getroot().find("TEXT/BODY")
    if body is None or not body.text:
        raise ValueError(f"{article}: no <BODY> text; expected a Reuters-21578 article")
    pieces = (re.sub(r"\s+", " ", piece).strip() for piece in re.split(r"\n\s{2,}", body.text))
    return [piece.removesuffix(" Reuter") for piece in pieces if len(piece.split()) >= MIN_PARAGRAPH_WORDS]


def build_reuters_topic(folder: Path, sizes: SplitSizes, seed: int, cache_dir: Path) -> None:
    """text (a paragraph) -> acq or crude. Articles are split per topic; train repeats crude paragraphs to
    balance the topics, valid and test are balanced subsets; `sizes` caps the rows per split."""
    texts = ensure_tm_texts(cache_dir)
    rng = rng_for(seed, "reuters")
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for topic in TOPICS:
        articles = sorted((texts / topic).glob("*.xml"))
        order = rng.permutation(len(articles))
        start = 0
        for split in SPLITS:
            count = round(ARTICLE_SHARES[split] * len(articles)) if split != SPLITS[-1] else len(articles) - start
            for index in order[start:start + count]:
                rows[split] += [{"text": text, "topic": topic, "article": articles[index].name}
                                for text in paragraphs(articles[index])]
            start += count
    for split in SPLITS:
        kept = repeated_to_balance(rows[split]) if split == "train" else balanced(rows[split], rng)
        picked = rng.permutation(len(kept))[:sizes.of(split)]
        write_split(folder, split, [kept[i] for i in sorted(picked)])


def repeated_to_balance(rows: list[dict]) -> list[dict]:
    """The rows plus repeats of the rarer topics' rows, so that training sees every topic equally often."""
    by_topic = {topic: [row for row in rows if row["topic"] == topic] for topic in TOPICS}
    most = max(len(topic_rows) for topic_rows in by_topic.values())
    return [topic_rows[i % len(topic_rows)] for topic_rows in by_topic.values() for i in range(most)]


def balanced(rows: list[dict], rng) -> list[dict]:
    """As many rows of each topic as the rarest topic has (random ones), so that the majority baseline of a
    held-out split is 50%."""
    by_topic = {topic: [row for row in rows if row["topic"] == topic] for topic in TOPICS}
    count = min(len(topic_rows) for topic_rows in by_topic.values())
    return [topic_rows[i] for topic_rows in by_topic.values() for i in sorted(rng.permutation(len(topic_rows))[:count])]
