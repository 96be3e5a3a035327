"""The text-to-speech row of the demo's table: the recogniser's WER on the generated speech (ofasys-generate's
WAV files), on the reference audio (the ceiling: what the recogniser itself misses) and on one fixed training
clip for every row (the baseline), with the mel-cepstral distortion, and the spectrogram picture."""
from __future__ import annotations

from pathlib import Path

from ofasys_fs.inference.evaluate import score
from ofasys_fs.registry import build_metric

from .baselines import rule_predictions
from .demo_tasks import DemoTask
from .image_report import with_absolute
from .pictures import draw_spectrograms

CLEAR_MARGIN = 0.10  # the model's WER must be this much below the baseline's ("clearly above" in report.py)
SPECTROGRAM_EXAMPLES = 4


def score_speech(out: Path, task: DemoTask, outputs: list[dict], train_rows: list[dict],
                 test_rows: list[dict], predictions: Path) -> tuple[dict, str, Path]:
    """(the table's row, a note with MCD and what was heard, the spectrogram picture); `predictions`: the folder
    ofasys-generate wrote the WAV files to."""
    folder = out / "raw" / task.name
    texts = [row[task.references] for row in test_rows]
    generated = [str(predictions / output["file"]) for output in outputs]
    references = [str(folder / row["wav"]) for row in test_rows]
    fixed_is, fixed = rule_predictions(task.baseline, "wav", with_absolute(train_rows, folder, "wav"), test_rows)
    wer = {name: score(task.metric, audio, texts)[0] for name, audio in
           (("model", generated), ("ceiling", references), ("baseline", fixed))}
    mcd = {name: score("mcd", audio, references)[0]["mcd"] for name, audio in
           (("model", generated), ("baseline", fixed))}
    row = {"task": task.name, "inputs": task.inputs, "metric": task.metric, "test_rows": len(test_rows),
           "model": wer["model"]["asr_wer"], "baseline": wer["baseline"]["asr_wer"],
           "baseline_is": f"{fixed_is}: {train_rows[0][task.references]!r}",
           "stricter": None, "stricter_is": None, "above_stricter": None,
           "ceiling": wer["ceiling"]["asr_wer"], "ceiling_is": "the recogniser on the reference audio",
           "mcd": mcd["model"], "baseline_mcd": mcd["baseline"]}
    row["clearly_above"] = row["baseline"] - row["model"] >= CLEAR_MARGIN
    heard = build_metric(task.metric).transcripts(generated[:SPECTROGRAM_EXAMPLES], texts[:SPECTROGRAM_EXAMPLES])
    note = (f"{task.name}: sentence accuracy {wer['model']['asr_sentence_accuracy']:.3f} (reference audio "
            f"{wer['ceiling']['asr_sentence_accuracy']:.3f}); MCD {mcd['model']:.2f} against the reference "
            f"audio (the fixed clip: {mcd['baseline']:.2f}); heard: " +
            ", ".join(f"{text!r} -> {said!r}" for text, said in zip(texts, heard)))
    examples = [{"text": text, "reference": reference, "generated": audio, "heard": said}
                for text, reference, audio, said in zip(texts, references, generated, heard)]
    return row, note, draw_spectrograms(examples, out / f"spectrograms_{task.name}.png")

