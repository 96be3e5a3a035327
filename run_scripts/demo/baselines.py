"""The demo's baselines: rules that see the training rows and part of a test row, never the model.

A task names a trivial rule it must clearly beat and, where its input allows shortcuts, stricter rules;
the table shows the best of those on the test rows, so that it says what the model learnt beyond the
shortcut. Rules:

- `majority`: the most frequent training answer;
- `majority_per:<column>`: the most frequent training answer among rows with the same <column> (the
  global one for an unseen value): what the wording of a question alone predicts;
- `mean_box`: the mean training box;
- `random_of:<column>`: an item of the row's list <column> picked at random (seeded), e.g. a digit of the
  canvas: what a rule that reads every candidate perfectly but ignores what singles one out scores;
- `random_train`: the target of a training row picked at random (seeded), e.g. a real image for a caption
  that it does not show, or a real motion window of either clip for a clip's description;
- `fixed_clip`: the target of the first training row for every test row, e.g. one training clip of speech
  for every text to speak.
"""
from __future__ import annotations

import collections
import importlib
from typing import Callable, Optional

import numpy as np

from ofasys_fs.inference.evaluate import score

importlib.import_module("ofasys_fs.metrics")  # registers the built-in metrics that score() looks up

Rule = Callable[[str, str, list[dict], list[dict]], tuple[str, list]]  # (column, argument, train, test)


def majority(column: str, _: str, train_rows: list[dict], test_rows: list[dict]) -> tuple[str, list]:
    answer = most_frequent(str(row[column]) for row in train_rows)
    return f"majority answer {answer!r}", [answer] * len(test_rows)


def majority_per(column: str, given: str, train_rows: list[dict], test_rows: list[dict]) -> tuple[str, list]:
    answers: dict[str, list[str]] = collections.defaultdict(list)
    for row in train_rows:
        answers[str(row[given])].append(str(row[column]))
    best = {value: most_frequent(values) for value, values in answers.items()}
    fallback = most_frequent(str(row[column]) for row in train_rows)
    return f"majority answer per {given}", [best.get(str(row[given]), fallback) for row in test_rows]


def mean_box(column: str, _: str, train_rows: list[dict], test_rows: list[dict]) -> tuple[str, list]:
    box = np.mean([row[column] for row in train_rows], axis=0).round(1).tolist()
    return f"mean training box {box}", [box] * len(test_rows)


def random_of(_: str, candidates: str, train_rows: list[dict], test_rows: list[dict]) -> tuple[str, list]:
    rng = np.random.default_rng(0)
    picks = [row[candidates][int(rng.integers(len(row[candidates])))] for row in test_rows]
    return f"a random one of the row's {candidates}", picks


def random_train(column: str, _: str, train_rows: list[dict], test_rows: list[dict]) -> tuple[str, list]:
    rng = np.random.default_rng(0)
    return f"the {column} of a random training row", [train_rows[int(rng.integers(len(train_rows)))][column]
                                                       for _ in test_rows]


def fixed_clip(column: str, _: str, train_rows: list[dict], test_rows: list[dict]) -> tuple[str, list]:
    clip = train_rows[0][column]
    return f"one fixed training clip (the {column} of the first training row)", [clip] * len(test_rows)


RULES: dict[str, Rule] = {"majority": majority, "majority_per": majority_per, "mean_box": mean_box,
                          "random_of": random_of, "random_train": random_train, "fixed_clip": fixed_clip}


def headline(metric: str, values: dict[str, float]) -> float:
    """The value the table shows: the metric's own key, else its first value."""
    return values.get(metric, next(iter(values.values())))


def most_frequent(values) -> str:
    return collections.Counter(values).most_common(1)[0][0]


def rule_predictions(rule: str, column: str, train_rows: list[dict], test_rows: list[dict]) -> tuple[str, list]:
    """(description, one prediction per test row) of a rule spec such as "majority_per:question"."""
    name, _, argument = rule.partition(":")
    if name not in RULES:
        raise ValueError(f"unknown baseline rule {rule!r}; expected one of {sorted(RULES)} (with :<column> "
                         f"for majority_per and random_of)")
    return RULES[name](column, argument, train_rows, test_rows)


def best_baseline(rules: tuple[str, ...], metric, column: str, train_rows: list[dict], test_rows: list[dict],
                  references: Optional[str] = None) -> tuple[str, dict[str, float]]:
    """(description, metric values) of the rule that scores best on the test rows by the metric's headline; the
    rules predict `column`, scored against `references` (default: `column`). `metric`: a name or {"name", ...}."""
    truth = [row[references or column] for row in test_rows]
    name = metric["name"] if isinstance(metric, dict) else metric
    scored = []
    for rule in rules:
        description, predictions = rule_predictions(rule, column, train_rows, test_rows)
        values, higher_is_better = score(metric, predictions, truth)
        value = headline(name, values)
        scored.append((value if higher_is_better else -value, description, values))
    _, description, values = max(scored, key=lambda item: item[0])
    return description, values
