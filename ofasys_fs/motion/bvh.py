"""BVH text <-> (Skeleton, channel frames, frame time). Every syntax or value error is a MotionError naming the
source and the line (and, in the MOTION section, the frame and channel)."""
from __future__ import annotations

import logging
import math
from typing import Iterator

import numpy as np

from .errors import MotionError
from .skeleton import Node, Skeleton

logger = logging.getLogger(__name__)


class _Tokens:
    """The HIERARCHY section as (word, line) tokens, read front to back."""

    def __init__(self, lines: list[str], source: str):
        self.source = source
        self.items = [(word, number) for number, line in enumerate(lines, 1) for word in line.split()]
        self.position = 0

    def error(self, line: int, reason: str) -> MotionError:
        return MotionError(f"{self.source}, line {line}", reason)

    def last_line(self) -> int:
        return self.items[-1][1] if self.items else 1

    def next(self, expected: str) -> tuple[str, int]:
        if self.position >= len(self.items):
            raise self.error(self.last_line(), f"the file ends inside the HIERARCHY; expected {expected}")
        self.position += 1
        return self.items[self.position - 1]

    def expect(self, word: str) -> int:
        found, line = self.next(repr(word))
        if found != word:
            raise self.error(line, f"found {found!r}, expected {word!r}")
        return line

    def number(self, what: str) -> float:
        word, line = self.next(what)
        try:
            value = float(word)
        except ValueError:
            raise self.error(line, f"found {word!r}, expected {what}") from None
        if not math.isfinite(value):
            raise self.error(line, f"{what} is {word}; expected a finite number")
        return value

    def peek(self) -> str:
        return self.items[self.position][0] if self.position < len(self.items) else ""


def _read_node(tokens: _Tokens, nodes: list[Node], name: str, parent: int, line: int, end: bool) -> None:
    tokens.expect("{")
    tokens.expect("OFFSET")
    offset = tuple(tokens.number(f"the {axis} offset of {name!r}") for axis in "XYZ")
    channels: tuple[str, ...] = ()
    if tokens.peek() == "CHANNELS":
        channels_line = tokens.expect("CHANNELS")
        count = tokens.number(f"the channel count of {name!r}")
        if end:
            raise tokens.error(channels_line, f"the End Site of {nodes[parent].name!r} has CHANNELS; an End Site "
                                              f"has only an OFFSET")
        if count != int(count) or not 1 <= count <= 6:
            raise tokens.error(channels_line, f"CHANNELS {count:g} of {name!r}: expected a count from 1 to 6")
        channels = tuple(tokens.next(f"{int(count)} channel names")[0] for _ in range(int(count)))
    elif not end:
        raise tokens.error(line, f"JOINT {name!r} has no CHANNELS line after its OFFSET; expected e.g. "
                                 f"'CHANNELS 3 Zrotation Xrotation Yrotation'")
    index = len(nodes)
    nodes.append(Node(name, parent, offset, channels, line))
    while True:
        word, child_line = tokens.next(f"JOINT, End Site or '}}' closing {name!r}")
        if word == "}":
            return
        if end:
            raise tokens.error(child_line, f"found {word!r} inside an End Site; expected '}}'")
        if word == "JOINT":
            child, _ = tokens.next("a joint name")
            _read_node(tokens, nodes, child, index, child_line, end=False)
        elif word == "End":
            tokens.expect("Site")
            _read_node(tokens, nodes, f"{name}_end", index, child_line, end=True)
        else:
            raise tokens.error(child_line, f"found {word!r} in joint {name!r}; expected JOINT, End Site or '}}'")


def _split_sections(text: str, source: str) -> tuple[list[str], int]:
    lines = text.lstrip("\ufeff").splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first].split()[0] != "HIERARCHY":
        raise MotionError(source, "not a BVH file: expected it to start with HIERARCHY")
    motion = next((i for i, line in enumerate(lines) if line.strip() == "MOTION"), None)
    if motion is None:
        raise MotionError(source, "no MOTION line: expected the HIERARCHY followed by MOTION, 'Frames: N', "
                                  "'Frame Time: T' and N lines of channel values")
    return lines, motion


def _header_value(lines: list[str], index: int, label: str, source: str) -> float:
    line = lines[index] if index < len(lines) else ""
    key, _, value = line.partition(":")
    where = f"{source}, line {index + 1}"
    if " ".join(key.split()) != label:
        raise MotionError(where, f"found {line.strip()[:40]!r}, expected '{label}: <number>'")
    try:
        number = float(value)
    except ValueError:
        raise MotionError(where, f"'{label}:' is followed by {value.strip()[:20]!r}; expected a number") from None
    if not math.isfinite(number) or number <= 0:
        raise MotionError(where, f"'{label}: {value.strip()}' must be a positive number")
    return number


def _frames(lines: list[str], start: int, declared: int, skeleton: Skeleton, source: str) -> np.ndarray:
    rows = [(number, line) for number, line in enumerate(lines[start:], start + 1) if line.strip()]
    if len(rows) < declared:
        span = f"lines {rows[0][0]}-{rows[-1][0]}" if rows else "no line"
        raise MotionError(f"{source}, line {start - 1}", f"'Frames: {declared}' but only {len(rows)} frame lines "
                                                        f"follow ({span}); the file is truncated or the count wrong")
    if len(rows) > declared:  # e.g. Boxing_Toes.bvh of assimp's test models; other readers stop at the count too
        logger.warning("%s: 'Frames: %d' (line %d) but %d frame lines follow; reading the first %d", source,
                       declared, start - 1, len(rows), declared)
        rows = rows[:declared]
    width = skeleton.num_channels
    for frame, (number, line) in enumerate(rows):
        count = len(line.split())
        if count != width:
            raise MotionError(f"{source}, line {number} (frame {frame})",
                              f"{count} values, expected {width}: one per channel of the HIERARCHY")
    try:
        values = np.array(" ".join(line for _, line in rows).split(), dtype=np.float64).reshape(declared, width)
    except ValueError:
        frame, number, word = next((f, n, w) for f, (n, line) in enumerate(rows) for w in line.split()
                                   if not _is_float(w))
        raise MotionError(f"{source}, line {number} (frame {frame})", f"{word!r} is not a number") from None
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        frame, column = map(int, bad[0])
        raise MotionError(f"{source}, line {rows[frame][0]} (frame {frame})",
                          f"channel {channel_names(skeleton)[column]!r} is {values[frame, column]}; expected "
                          f"finite numbers")
    return values


def _is_float(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


def channel_names(skeleton: Skeleton) -> list[str]:
    """'Joint Channel' for every column of a frame line."""
    return [f"{skeleton.nodes[i].name} {channel}" for i in skeleton.joints for channel in skeleton.nodes[i].channels]


def parse_hierarchy(text: str, source: str = "BVH header") -> Skeleton:
    """The skeleton of a HIERARCHY section (what Skeleton.header() writes)."""
    return _skeleton(text.lstrip("\ufeff").splitlines(), source)


def _skeleton(lines: list[str], source: str) -> Skeleton:
    tokens = _Tokens(lines, source)
    tokens.expect("HIERARCHY")
    root_line = tokens.expect("ROOT")
    name, _ = tokens.next("the root's name")
    nodes: list[Node] = []
    _read_node(tokens, nodes, name, -1, root_line, end=False)
    if tokens.peek():
        word, line = tokens.next("MOTION")
        raise tokens.error(line, f"found {word!r} after the root joint closed; expected MOTION (one ROOT per file)")
    return Skeleton(nodes, source)


def parse_bvh(text: str, source: str = "BVH text") -> tuple[Skeleton, np.ndarray, float]:
    """BVH text -> (skeleton, channel values [frames, channels] in file order, frame time in seconds)."""
    lines, motion = _split_sections(text, source)
    skeleton = _skeleton(lines[:motion], source)
    frames = _header_value(lines, motion + 1, "Frames", source)
    if frames != int(frames):
        raise MotionError(f"{source}, line {motion + 2}", f"'Frames: {frames:g}' must be a whole number")
    frame_time = _header_value(lines, motion + 2, "Frame Time", source)
    return skeleton, _frames(lines, motion + 3, int(frames), skeleton, source), frame_time


def format_bvh(skeleton: Skeleton, channels: np.ndarray, frame_time: float) -> str:
    """A BVH file's text; values in shortest round-trip form, so reading it back gives the same floats."""
    return "".join(_bvh_chunks(skeleton, channels, frame_time))


def _bvh_chunks(skeleton: Skeleton, channels: np.ndarray, frame_time: float) -> Iterator[str]:
    yield skeleton.header()
    yield f"MOTION\nFrames: {len(channels)}\nFrame Time: {float(frame_time)!r}\n"
    for row in np.asarray(channels, dtype=np.float64).tolist():
        yield " ".join(map(repr, row)) + "\n"
