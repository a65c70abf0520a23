"""``facetrack`` command line: JSON on stdout, logs on stderr, non-zero exit on failure."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from facetrack import __version__
from facetrack.config import FaceTrackerConfig, load_config
from facetrack.errors import FaceTrackError
from facetrack.images import read_image
from facetrack.inference import InferenceBackend, backend_from_config
from facetrack.library import FaceLibrary

_LOG = logging.getLogger("facetrack")


def _emit(obj: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


def _backend(cfg: FaceTrackerConfig) -> InferenceBackend:
    return backend_from_config(cfg)


def _library(cfg: FaceTrackerConfig, backend: InferenceBackend) -> FaceLibrary:
    return FaceLibrary(cfg.db_path, backend.model_id, backend.embedding_dim)


def _config(args: argparse.Namespace) -> FaceTrackerConfig:
    overrides: dict[str, Any] = {}
    if getattr(args, "db", None):
        overrides["db_path"] = args.db
    if getattr(args, "threshold", None) is not None:
        overrides["cosine_similarity_threshold"] = args.threshold
    return load_config(getattr(args, "config", None), **overrides)


def cmd_detect(args: argparse.Namespace) -> int:
    from facetrack.recognizer import FaceRecognizer

    cfg = _config(args)
    rec = FaceRecognizer(_backend(cfg), cfg)
    failed = 0
    for path in args.images:
        try:
            dets = rec.detect(read_image(path))
        except FaceTrackError as err:
            failed += 1
            _emit({"image": path, "error": str(err)})
            continue
        _emit({"image": path, "faces": [d.to_json() for d in dets]})
    return 1 if failed else 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from facetrack.recognizer import FaceRecognizer

    cfg = _config(args)
    backend = _backend(cfg)
    result = FaceRecognizer(backend, cfg, _library(cfg, backend)).enroll(args.name, list(args.images))
    _emit(result.to_json())
    return 0 if result.enrolled else 1


def cmd_recognize(args: argparse.Namespace) -> int:
    from facetrack.recognizer import FaceRecognizer

    cfg = _config(args)
    backend = _backend(cfg)
    rec = FaceRecognizer(backend, cfg, _library(cfg, backend))
    failed = 0
    for path in args.images:
        try:
            faces = rec.recognize(read_image(path))
        except FaceTrackError as err:
            failed += 1
            _emit({"image": path, "error": str(err)})
            continue
        _emit({"image": path, "faces": faces})
    return 1 if failed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from facetrack.recognizer import FaceRecognizer

    cfg = _config(args)
    rec = FaceRecognizer(_backend(cfg), cfg)
    _emit(rec.verify(read_image(args.image1), read_image(args.image2)))
    return 0


def cmd_persons(args: argparse.Namespace) -> int:
    cfg = _config(args)
    backend = _backend(cfg)
    _emit({"persons": [p.to_json() for p in _library(cfg, backend).persons()]})
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    cfg = _config(args)
    backend = _backend(cfg)
    removed = _library(cfg, backend).forget(args.name)
    _emit({"person": args.name, "forgotten": True, "embeddings_removed": removed})
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    cfg = _config(args)
    backend = _backend(cfg)
    person = _library(cfg, backend).rename(args.name, args.to)
    _emit({"person": person.name, "previous": args.name, "person_id": person.person_id})
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    from facetrack.pipeline import run_pipeline

    cfg = _config(args)
    backend = _backend(cfg)
    library = _library(cfg, backend)
    out: TextIO = open(args.events, "w", encoding="utf-8") if args.events else sys.stdout  # noqa: SIM115
    try:
        summary = run_pipeline(
            args.source,
            backend,
            library,
            cfg,
            on_event=lambda ev: _emit(ev.to_json(), out),
            annotated_path=args.annotated,
            progress=sys.stderr.isatty() and not args.no_progress,
            max_frames=args.max_frames,
        )
        _emit(summary.to_json(), out)
    finally:
        if out is not sys.stdout:
            out.close()
    _LOG.info(
        "%d frames at %.1f frames/s, %d embeddings, %d tracks",
        summary.frames,
        summary.fps,
        summary.embeddings,
        summary.tracks,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from facetrack.config.service import load_service_config
    from facetrack.service import FaceTrackService

    service = FaceTrackService(load_service_config(args.config))
    service.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one sub-command per operation)."""
    p = argparse.ArgumentParser(prog="facetrack", description="Face tracking and recognition engine.")
    p.add_argument("--version", action="version", version=f"facetrack {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, db: bool) -> None:
        sp.add_argument("--config", help="YAML or JSON configuration file")
        if db:
            sp.add_argument("--db", help="face library directory (overrides db_path)")
        sp.add_argument("--threshold", type=float, help="cosine similarity threshold (overrides the config)")

    sp = sub.add_parser("detect", help="detect faces: boxes, scores, landmarks")
    common(sp, db=False)
    sp.add_argument("images", nargs="+")
    sp.set_defaults(func=cmd_detect)

    sp = sub.add_parser("enroll", help="enrol a person from photos")
    common(sp, db=True)
    sp.add_argument("--name", required=True)
    sp.add_argument("images", nargs="+")
    sp.set_defaults(func=cmd_enroll)

    sp = sub.add_parser("recognize", help="identify the faces of photos")
    common(sp, db=True)
    sp.add_argument("images", nargs="+")
    sp.set_defaults(func=cmd_recognize)

    sp = sub.add_parser("verify", help="1:1 verification of the largest face of two photos")
    common(sp, db=False)
    sp.add_argument("image1")
    sp.add_argument("image2")
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("persons", help="list the face library")
    common(sp, db=True)
    sp.set_defaults(func=cmd_persons)

    sp = sub.add_parser("forget", help="remove a person and their embeddings")
    common(sp, db=True)
    sp.add_argument("--name", required=True)
    sp.set_defaults(func=cmd_forget)

    sp = sub.add_parser("rename", help="rename a person")
    common(sp, db=True)
    sp.add_argument("--name", required=True)
    sp.add_argument("--to", required=True)
    sp.set_defaults(func=cmd_rename)

    sp = sub.add_parser("track", help="track and identify faces in a video file, RTSP URL or webcam")
    common(sp, db=True)
    sp.add_argument("--source", required=True, help="file path, rtsp:// URL or webcam index")
    sp.add_argument("--events", help="write JSON lines here instead of stdout")
    sp.add_argument("--annotated", help="write an annotated MP4 here")
    sp.add_argument("--max-frames", type=int, help="stop after this many frames")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sp.set_defaults(func=cmd_track)

    sp = sub.add_parser("serve", help="run every configured camera, publishing over MQTT")
    sp.add_argument("--config", required=True, help="service configuration (YAML or JSON)")
    sp.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facetrack`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except FaceTrackError as err:
        _LOG.error("%s", err)
        _emit({"error": str(err)})
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
