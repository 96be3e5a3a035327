"""MotionError: a motion value that cannot be read or used, naming its file and the line, frame or joint."""
from __future__ import annotations

from ..media import MediaError


class MotionError(MediaError):
    """A malformed or unusable motion (BVH syntax, channel count, non-finite value, skeleton, length); the
    message starts with the source ("file 'x.bvh', line 12: ...") and says what was expected."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}", source=source)
