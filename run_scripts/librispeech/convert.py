"""LibriSpeech -> shards for the built-in task "asr" (columns wav, text, id).

Input: the LibriSpeech corpus (Panayotov et al., ICASSP 2015, https://www.openslr.org/12, e.g.
train-clean-100.tar.gz), unpacked as LibriSpeech/<subset>/<speaker>/<chapter>/:

    <speaker>-<chapter>-<utterance>.flac          16 kHz mono FLAC, one per utterance
    <speaker>-<chapter>.trans.txt                 one line per utterance: "<utterance id> <TRANSCRIPT>"
        e.g. "1272-128104-0000 MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES AND WE ARE GLAD TO ..."

One row per transcript line; the audio is the FLAC file (stored as its bytes), the text the transcript
lowercased (WER is case-insensitive; the phone targets come from CMUdict's lowercase entries). Give one or
more --subset folders per split: train = train-clean-100 + train-clean-360 + train-other-500 (960 h),
valid = dev-clean (and/or dev-other), test = test-clean; a second test set as split test_other.
"""
import argparse
import glob
import os
import sys
from collections.abc import Iterator

from run_scripts.common.convert_lib import ConversionError, Converter, MediaReader, read_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="the LibriSpeech/ folder")
    parser.add_argument("--subset", required=True, action="append",
                        help="subset folder under --root (train-clean-100, dev-clean, ...); repeatable")


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[dict]:
    for subset in args.subset:
        folder = os.path.join(args.root, subset)
        transcripts = sorted(glob.glob(os.path.join(glob.escape(folder), "*", "*", "*.trans.txt")))
        if not transcripts:
            raise ConversionError(f"{folder}: no <speaker>/<chapter>/*.trans.txt files (is it a LibriSpeech subset?)")
        for path in transcripts:
            for where, line in read_lines(path):
                utterance, _, text = line.partition(" ")
                if not utterance or not text.strip():
                    raise ConversionError(f"{where}: expected '<utterance id> <TRANSCRIPT>', got {line!r}")
                audio = media(os.path.join(os.path.dirname(path), utterance + ".flac"), where)
                yield {"wav": audio, "text": text.strip().lower(), "id": utterance}


CONVERTER = Converter("librispeech/convert.py", __doc__, add_arguments, read_rows, "asr")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
