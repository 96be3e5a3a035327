"""The harness over several seeds: one table of means from results_seed<N>.json files (docs/multitask.md).

    python -m run_scripts.multitask.summary OUT/results_seed1.json OUT/results_seed2.json ... [--out mean.json]

A seed of the harness draws its own data split and initialisation, and a task scored on a few dozen test rows
moves by several rows between seeds; the mean over seeds is the figure to compare. Files of one seed may hold
halves of a run (a --generalist-only run and a --specialists-only run): each task's generalist and specialist
are taken from whichever file scored them, and a side scored twice for one seed is an error. The ratio is that of
the means over the seeds where both sides were scored, beside the per-seed ratios' range.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from .harness import ratio, spread

SIDES = ("specialist", "generalist")


def seed_of(path: Path, saved: dict) -> int:
    """The harness seed a results file was made with (saved since session 15; before, only in its name)."""
    if "seed" in saved:
        return int(saved["seed"])
    match = re.fullmatch(r"results_seed(\d+)\.json", path.name)
    if not match:
        raise SystemExit(f"{path}: no 'seed' in the file and its name is not results_seed<N>.json")
    return int(match.group(1))


def merge(files: Sequence[Path]) -> tuple[dict, dict]:
    """{task: {seed: row with both sides}} from the files, and {options as JSON: [files]} to show what was run."""
    rows: dict[str, dict[int, dict]] = {}
    options: dict[str, list[str]] = {}
    for path in files:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        seed = seed_of(Path(path), saved)
        options.setdefault(json.dumps(saved["options"], sort_keys=True), []).append(str(path))
        for row in saved["results"]:
            merged = rows.setdefault(row["task"], {}).setdefault(seed, {**row, **{side: math.nan for side in SIDES}})
            for side in SIDES:
                if math.isnan(row[side]):
                    continue
                if not math.isnan(merged[side]):
                    raise SystemExit(f"task {row['task']!r}, seed {seed}: the {side} is scored in two files "
                                     f"(one of them {path}); give each run of a seed once")
                merged[side] = row[side]
                merged[f"{side}_from"] = str(path)
            if merged["higher_is_better"] is None:
                merged["higher_is_better"] = row["higher_is_better"]
    return rows, options


def mean_rows(rows: dict) -> list[dict]:
    """One row per task: the means over the seeds that scored both sides, their ratio, the per-seed ratios."""
    summary = []
    for task, by_seed in rows.items():
        complete = {seed: row for seed, row in sorted(by_seed.items())
                    if not any(math.isnan(row[side]) for side in SIDES)}
        first = next(iter(by_seed.values()))
        higher = first["higher_is_better"]
        means = {side: (sum(row[side] for row in complete.values()) / len(complete) if complete else math.nan)
                 for side in (*SIDES, "trivial")}
        per_seed = [ratio(row["specialist"], row["generalist"], higher) for row in complete.values()]
        summary.append({"task": task, "metric": first["metric"], "higher_is_better": higher, "seeds": list(complete),
                        **means, "ratio": ratio(means["specialist"], means["generalist"], higher) if complete
                        else math.nan, "ratio_per_seed": per_seed})
    return summary


def mean_table(summary: Sequence[dict]) -> str:
    lines = ["| task | metric | seeds | specialist | generalist | ratio of means | ratio per seed | trivial |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary:
        metric = r["metric"] if r["higher_is_better"] else f"{r['metric']} (lower is better)"
        per_seed = spread(r["ratio_per_seed"]) if r["ratio_per_seed"] else "-"
        lines.append(f"| {r['task']} | {metric} | {','.join(map(str, r['seeds'])) or '-'} | {r['specialist']:.3f} | "
                     f"{r['generalist']:.3f} | {r['ratio']:.2f} | {per_seed} | {r['trivial']:.3f} |")
    scored = [r for r in summary if not math.isnan(r["ratio"])]
    if scored:
        worst = min(scored, key=lambda r: r["ratio"])
        lines.append(f"\nworst ratio of means: {worst['ratio']:.2f} ({worst['task']})")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="results_seed<N>.json files of the harness")
    parser.add_argument("--out", type=Path, help="also write the mean rows as JSON here")
    args = parser.parse_args(argv)
    rows, options = merge(args.files)
    for chosen, paths in options.items():
        print(f"options {chosen}: {', '.join(paths)}")
    summary = mean_rows(rows)
    print(mean_table(summary), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"options": list(options), "results": summary}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
