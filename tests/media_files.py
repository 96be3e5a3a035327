"""Real-format media the media tests decode: an H.264 clip of a square moving right, so that a decoded frame
tells which source frame it shows."""
import io

import av
import numpy as np

FRAMES, SQUARE, STEP = 16, 8, 3


def moving_square_video(container_format: str = "mp4") -> bytes:
    """FRAMES H.264 frames, 64x48 at 8 fps, a white SQUARE x SQUARE block moving STEP pixels right per frame."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(FRAMES):
            pixels = np.zeros((48, 64, 3), np.uint8)
            pixels[20 : 20 + SQUARE, STEP * t : STEP * t + SQUARE] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
