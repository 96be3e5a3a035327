"""Which columns of a preprocess input hold media (stored as the original encoded file bytes): named by the
user, by the instruction's IMAGE/AUDIO/VIDEO slots, or recognised from the values."""
from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any, Optional

from ..fetch import is_http_url
from ..instruction import Instruction

MEDIA_MODALITIES = ("IMAGE", "AUDIO", "VIDEO")
MEDIA_EXTENSIONS = {
    "image": (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".tga", ".ico", ".jp2",
              ".avif"),
    "audio": (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".aiff", ".aif"),
    "video": (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg"),
}


def media_kind(name: str) -> Optional[str]:
    """"image", "audio" or "video" from a file name's or URL's extension; None when it is not a media name."""
    extension = os.path.splitext(name.split("?", 1)[0].split("#", 1)[0])[1].lower()
    return next((kind for kind, extensions in MEDIA_EXTENSIONS.items() if extension in extensions), None)


def looks_like_media(value: Any, base_dir: Optional[str]) -> bool:
    """Bytes, a {'bytes', 'path'} dict, or a media-extension name of an existing file or an http(s) URL."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, Mapping):
        return bool(value) and set(value) <= {"bytes", "path"}
    if not isinstance(value, str) or media_kind(value) is None:
        return False
    return is_http_url(value) or os.path.isfile(os.path.join(base_dir or "", value))


def choose_media_columns(explicit: Optional[Collection[str]], instruction: Optional[Instruction], samples: list[dict],
                         base_dir: Optional[str]) -> set[str]:
    """--media-columns, else the instruction's IMAGE/AUDIO/VIDEO slots, else columns whose values look like media."""
    if explicit is not None:
        return set(explicit)
    if instruction is not None:
        return {slot.name for slot in (*instruction.encoder, *instruction.decoder)
                if slot.modality in MEDIA_MODALITIES and slot.name and not slot.in_repeat and "." not in slot.name}
    return {name for row in samples for name, value in row.items() if looks_like_media(value, base_dir)}
