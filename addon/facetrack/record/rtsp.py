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


def main(argv: list[str] | None = None) -> int:
    """``python -m facetrack.record.rtsp --config FILE --camera NAME --rtsp-url URL``.

    Run by the RTSP server on demand: reads the service configuration for the engine's HTTP port
    and stream token (derived from the URL-signing secret, never on a command line) and replaces
    itself with the ffmpeg publisher.
    """
    import argparse
    import os

    from facetrack.config.service import load_service_config
    from facetrack.web.signing import secret_and_stream_token

    ap = argparse.ArgumentParser(prog="python -m facetrack.record.rtsp", description=main.__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--camera", required=True)
    ap.add_argument("--rtsp-url", required=True)
    ap.add_argument("--fps", type=float, default=10.0)
    args = ap.parse_args(argv)
    cfg = load_service_config(args.config)
    if args.camera not in {c.name for c in cfg.cameras}:
        raise SystemExit(f"no camera {args.camera!r} in {args.config}")
    h = cfg.http
    _, token = secret_and_stream_token(h.secret_file, cfg.db_path, h.stream_token)
    query = f"?token={token}" if token else ""
    url = f"http://127.0.0.1:{h.port}/api/cameras/{args.camera}/stream.mjpeg{query}"
    cmd = publish_command(url, args.rtsp_url, args.fps)
    os.execvp(cmd[0], cmd)  # noqa: S606 - fixed argv, no shell
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
