"""The annotated stream over RTSP.

The engine does not keep an RTSP encoder running: the RTSP server in the HA app (MediaMTX, see
``addon/DOCS.md``) starts :func:`publish_command` on demand, when a client (the HA camera entity,
VLC) opens ``rtsp://<host>:8554/<camera>``, and stops it when the last client leaves. The command
reads the engine's MJPEG endpoint (which encodes only while watched) and pushes H.264 to the RTSP
server. So the stream costs nothing when nobody watches.
"""

from __future__ import annotations

import shutil


def publish_command(mjpeg_url: str, rtsp_url: str, fps: float = 10.0, ffmpeg: str | None = None) -> list[str]:
    """The ffmpeg command that turns the engine's MJPEG stream into an RTSP publication.

    Args:
        mjpeg_url: ``http://127.0.0.1:8099/api/cameras/<camera>/stream.mjpeg`` (with ``token``).
        rtsp_url: where to publish, e.g. ``rtsp://127.0.0.1:8554/<camera>`` (MediaMTX sets
            ``$RTSP_PORT`` and ``$MTX_PATH`` for on-demand commands).
        fps: frame rate requested from the MJPEG endpoint and given to the encoder (frames/s).

    Returns:
        The argv list (``libx264``, ``zerolatency``, ``yuv420p``, RTSP over TCP).
    """
    sep = "&" if "?" in mjpeg_url else "?"
    return [
        ffmpeg or shutil.which("ffmpeg") or "ffmpeg",
        "-hide_banner", "-loglevel", "error",
        "-f", "mjpeg", "-r", f"{fps:g}", "-i", f"{mjpeg_url}{sep}fps={fps:g}",
        "-an", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-pix_fmt", "yuv420p", "-g", str(max(1, round(fps * 2))),
        "-f", "rtsp", "-rtsp_transport", "tcp", rtsp_url,
    ]  # fmt: skip
