"""A STRUCT task from a real table that ships with scikit-learn: Fisher's iris measurements (150 flowers,
3 species). Each row is a one-row table (header + measurements in cm) and the target is the species."""
from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_iris

from .data_common import SPLITS, SplitSizes, rng_for, take_disjoint, write_split

HEADER = ["sepal length", "sepal width", "petal length", "petal width"]


def build_iris(folder: Path, sizes: SplitSizes, seed: int) -> None:
    """flower ({"header", "rows"}) -> species; each flower is in one split only."""
    iris = load_iris()
    picks = take_disjoint(len(iris.data), sizes, rng_for(seed, "iris"))
    for split in SPLITS:
        rows = [{"flower": {"header": HEADER, "rows": [[f"{value:.1f}" for value in iris.data[index]]]},
                 "species": str(iris.target_names[iris.target[index]])} for index in picks[split]]
        write_split(folder, split, rows)
