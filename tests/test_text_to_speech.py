"""Text-to-speech (docs/tasks/speech.md): mel frames -> Griffin-Lim keeps speech recognisable, a micro model learns
to say digit words that an offline recogniser (pocketsphinx, trained on real speech) identifies, a shuffled-text
control does not, and ofasys-generate writes audio files that play back at the right rate and length.

Needs the flite program (Debian `flite`) and the pocketsphinx package; `make test` installs both."""
from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
import soundfile
import torch

from ofasys_fs import GeneralistModel, Instruction
from ofasys_fs.cli import generate as generate_cli
from ofasys_fs.contracts import SampleContext
from ofasys_fs.data.encode import RowEncoder
from ofasys_fs.inference.predictor import Predictor
from ofasys_fs.mel import MelSettings, Waveform
from ofasys_fs.metrics.speech_recognizer import Recognizer
from ofasys_fs.preprocess.config import DataConfig
from ofasys_fs.registry import build_criterion, build_metric, build_vocoder
from ofasys_fs.vocab import Vocabulary
from run_scripts.demo.data_tts import flite_say

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="needs flite (apt-get install flite; make test "
                                                                      "installs it)")
pocketsphinx = pytest.importorskip("pocketsphinx", reason="needs pocketsphinx (make test installs it)")

WORDS = ("one", "two", "three", "four", "five")
STRETCHES = (0.9, 1.0, 1.1)
INSTRUCTION = "[PHONE:text] -> [AUDIO:wav]"
# 2 decoder layers (micro has 4): the test's long mel targets ran a third longer through 4
MODEL = dict(arch="micro", decoder_layers=2, mel_bins=40, mel_frames_per_step=4)
# with the default prenet dropout and memory_positions, seeds 0-3 then hear 4, 5, 4, 5 of 5 words (500 updates: 3, 4,
# 4, 3; without memory_positions 4, 3, 4, 4 on the same machine; 300 updates: 2-4), their shuffled controls 0-1
UPDATES = 600
LR = 5e-3  # decayed linearly to 0 (3e-3 at 300 updates: 1-3 words)


@pytest.fixture(scope="module")
def word_rows(tmp_path_factory):
    """Each word spoken by flite's kal16 voice at three speaking rates."""
    folder = tmp_path_factory.mktemp("tts_words")
    return [{"text": word, "wav": str(flite_say(word, folder / f"{word}_{stretch}.wav", stretch=stretch))}
            for word in WORDS for stretch in STRETCHES]


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.default()


def train_micro(rows: list, vocab: Vocabulary, seed: int = 0) -> tuple[GeneralistModel, RowEncoder]:
    """The real components (RowEncoder, GeneralistModel with the audio_mel adaptor, frame_regression) trained on one
    collated batch of every row with AdamW: the Trainer would preprocess the audio again at every update."""
    torch.manual_seed(seed)
    model = GeneralistModel(**MODEL)
    model.build(vocab, model.adaptors_for([Instruction.parse(INSTRUCTION)]))
    encoder = RowEncoder("tts", INSTRUCTION, vocab, DataConfig.for_model(model.cfg))
    sample = encoder.collate([encoder.encode(row, SampleContext("train", "tts", i)) for i, row in enumerate(rows)])
    criterion = build_criterion("frame_regression")
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1 - update / UPDATES)
    model.train()
    for _ in range(UPDATES):
        loss, size, _ = criterion(model, sample)
        optimizer.zero_grad()
        (loss / size).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return model, encoder


def words_heard(model: GeneralistModel, encoder: RowEncoder) -> list[str]:
    outputs = Predictor(model, encoder).predict([{"text": word} for word in WORDS])
    assert all(isinstance(output.waveform, Waveform) and output.waveform.samples.numel() for output in outputs)
    recognizer = build_metric("asr_wer")
    return recognizer.transcripts([output.waveform for output in outputs], list(WORDS))


def test_mel_and_griffin_lim_keep_digit_strings_recognisable(tmp_path):
    """The audio_mel targets (40 bins) inverted by the default vocoder: the recogniser still hears every digit."""
    encoder = RowEncoder("tts", INSTRUCTION, Vocabulary.default(), DataConfig(mel_bins=40))
    vocoder = build_vocoder("griffin_lim", MelSettings(bins=40))
    texts = ["three one four", "nine two six", "five eight zero"]
    recovered, originals = [], []
    for index, (text, voice) in enumerate(zip(texts, ("kal16", "slt", "awb"))):
        path = flite_say(text, tmp_path / f"{index}.wav", voice=voice)
        frames = encoder.encode({"text": text, "wav": str(path)}, SampleContext("train")).decoder_features["frames"]
        recovered.append(Waveform(vocoder(frames), 16000))
        originals.append(str(path))
    metric = build_metric("asr_wer")
    assert metric.compute(recovered, texts)["asr_wer"] <= 0.12
    # an empty clip (a generator that stopped at once) is heard as nothing and leaves the recogniser working
    heard = metric.transcripts([Waveform(torch.zeros(0), 16000), *recovered], [texts[0], *texts])
    assert heard == ["", *metric.transcripts(recovered, texts)]
    scrambled = [Waveform(w.samples[torch.randperm(w.samples.numel())], 16000) for w in recovered]
    assert metric.compute(scrambled, texts)["asr_wer"] >= 0.5  # the recogniser does not hear digits in noise
    assert build_metric("mcd").compute(recovered, originals)["mcd"] < build_metric("mcd").compute(
        recovered, originals[1:] + originals[:1])["mcd"]


def test_the_recogniser_hears_each_clip_on_its_own(tmp_path):
    """pocketsphinx carries its cepstral means from one utterance into the next: a clip scored after six seconds of
    a loud tone must decode exactly (same hypothesis score) as the clip alone."""
    clip = str(flite_say("two seven", tmp_path / "clip.wav"))
    tone = Waveform(0.8 * torch.sin(torch.arange(16000 * 6) * 2 * np.pi * 150 / 16000), 16000)
    words = ["seven", "two"]
    alone = Recognizer()
    assert alone.transcribe(clip, words, 2) == "two seven"
    after_tone = Recognizer()
    after_tone.transcribe(tone, words, 2)
    assert after_tone.transcribe(clip, words, 2) == "two seven"
    assert after_tone.decoder(words, 2).hyp().score == alone.decoder(words, 2).hyp().score


def test_micro_model_learns_to_say_digit_words_and_shuffled_text_does_not(word_rows, vocab):
    """Trained on the words, the recogniser (a closed grammar of the five words, chance 1/5) hears at least 4 of
    5; trained on the same audio with the texts shuffled across rows so that no clip keeps its word (each word
    names three clips of three other words), at most 2 (seeds 0-3: 0-1)."""
    heard = words_heard(*train_micro(word_rows, vocab))
    assert sum(h == w for h, w in zip(heard, WORDS)) >= 4, heard
    shuffled = [{**row, "text": WORDS[(WORDS.index(row["text"]) + 1 + i % len(STRETCHES)) % len(WORDS)]}
                for i, row in enumerate(word_rows)]
    assert not any(a["text"] == b["text"] for a, b in zip(shuffled, word_rows))
    control = words_heard(*train_micro(shuffled, vocab))
    assert sum(h == w for h, w in zip(control, WORDS)) <= 2, control


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory):
    """docs/tasks/speech.md's example, run as printed in a folder holding its two clips (flite)."""
    folder = tmp_path_factory.mktemp("speech_guide")
    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "tasks" / "speech.md").read_text()
    block = page.split("```python\n", 1)[1].split("```", 1)[0]
    for text in ("three seven", "four two"):
        flite_say(text, folder / "clips" / f"{text.replace(' ', '_')}.wav")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        exec(compile(block, "docs/tasks/speech.md", "exec"), {})
    return folder


def test_the_speech_guide_example_runs_as_printed(guide_run):
    info = soundfile.info(str(guide_run / "four_two.wav"))
    assert info.samplerate == 16000 and 0 < info.frames <= 160 * (30 * 4 - 1)
    logged = [json.loads(line) for line in open(guide_run / "ckpt" / "train_log.jsonl")]
    assert any("stop_bce" in line.get("tasks", {}).get("tts", {}) for line in logged)  # the loss's parts, per task


def test_generate_cli_writes_audio_files_that_play_back(guide_run, tmp_path):
    """ofasys-generate on the guide's checkpoint: one WAV per row at 16 kHz whose length is the generated frames';
    a --sampling-seed (the prenet dropout's draws) gives the same speech again."""
    checkpoint = str(guide_run / "ckpt" / "checkpoint_last.pt")
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": word}) + "\n" for word in WORDS[:3]))
    out = tmp_path / "gen" / "out.jsonl"
    for results in (out, tmp_path / "again" / "out.jsonl"):
        assert generate_cli.main(["--path", checkpoint, "--task", "tts", "--data", str(data), "--results-path",
                                  str(results), "--max-len-a", "0", "--max-len-b", "5", "--stop-threshold", "0.99",
                                  "--sampling-seed", "7"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    for line in lines:
        first, again = (soundfile.read(str(path / line["file"]))[0] for path in (out.parent, tmp_path / "again"))
        assert np.array_equal(first, again)
    assert [line["id"] for line in lines] == [0, 1, 2]
    hop, per_step = MelSettings().hop_length, MODEL["mel_frames_per_step"]
    for line in lines:
        info = soundfile.info(str(out.parent / line["file"]))
        assert info.samplerate == line["sample_rate"] == 16000
        steps = info.frames // hop // per_step + 1  # Griffin-Lim gives hop x (frames - 1) samples
        assert 1 <= steps <= 5 and info.frames == hop * (steps * per_step - 1)
        assert abs(info.duration - line["seconds"]) < 1e-3
    assert generate_cli.main(["--path", checkpoint, "--task", "tts", "--data", str(data)]) == 1  # needs a folder
    assert generate_cli.main(["--path", checkpoint, "--task", "tts", "--data", str(data), "--results-path", str(out),
                              "--beam", "5"]) == 1  # a text option: a clear error, not a traceback
