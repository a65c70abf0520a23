"""``facetrack`` command line: JSON on stdout, logs on stderr, non-zero exit on failure.

Each command imports what it uses, inside its function: ``--version`` and building the parser load
no engine part, ``detect`` and ``verify`` load OpenCV and the models but never LanceDB or pyarrow
(the face library), and nothing here loads MinIO, Apprise, aiohttp or paho unless a command needs
them (tests/test_cli_imports.py checks it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from facetrack import __version__
from facetrack.errors import FaceTrackError

if TYPE_CHECKING:
    from facetrack.config import FaceTrackerConfig
    from facetrack.inference import InferenceBackend
    from facetrack.library import FaceLibrary

_LOG = logging.getLogger("facetrack")

#: File suffixes taken from a folder given to ``enroll`` (the formats :data:`facetrack.images.FORMATS`
#: decodes: JPEG, PNG, WebP, BMP, TIFF); other files there are left alone.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff"})


def _emit(obj: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up at call time (so in-process callers can capture it)
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


def _backend(cfg: FaceTrackerConfig) -> InferenceBackend:
    from facetrack.inference import backend_from_config

    return backend_from_config(cfg)


def _library(cfg: FaceTrackerConfig, backend: InferenceBackend) -> FaceLibrary:
    from facetrack.library import FaceLibrary

    return FaceLibrary(cfg.db_path, backend.model_id, backend.embedding_dim)


def _library_only(cfg: FaceTrackerConfig) -> FaceLibrary:
    """The face library for a command that reads or edits it without detecting or embedding a face.

    The OpenCV backend's model id and embedding size are class attributes, so its models (YuNet and
    SFace, about 0.3 s of CPU) are not loaded; another backend is built as usual (DeGirum loads its
    models on first use).
    """
    if cfg.backend != "opencv":
        return _library(cfg, _backend(cfg))
    from facetrack.inference.opencv import OpenCVBackend
    from facetrack.library import FaceLibrary

    return FaceLibrary(cfg.db_path, OpenCVBackend.model_id, OpenCVBackend.embedding_dim)


def _config(args: argparse.Namespace) -> FaceTrackerConfig:
    from facetrack.config import load_config

    overrides: dict[str, Any] = {}
    if getattr(args, "db", None):
        overrides["db_path"] = args.db
    if getattr(args, "threshold", None) is not None:
        overrides["cosine_similarity_threshold"] = args.threshold
    return load_config(getattr(args, "config", None), **overrides)


def cmd_detect(args: argparse.Namespace) -> int:
    from facetrack.images import read_image
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


def _folder_images(folder: Path) -> list[str]:
    """The image files directly in ``folder`` (by suffix, :data:`IMAGE_SUFFIXES`; hidden files left out), sorted."""
    return sorted(
        str(p)
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and not p.is_dir()
    )


class PlannedEnrolment:
    """One person's part of a multi-person ``enroll``: image paths, and folders already skipped.

    (A plain class: ``dataclasses`` would add its import to every CLI call, ``--version`` included.)
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.skipped: list[dict[str, str]] = []

    def add(self, path: str) -> None:
        """Add a photo, or every image of a folder (a folder without images is skipped, with why)."""
        where = Path(path)
        if not where.is_dir():
            self.paths.append(path)  # a missing path too: the enrolment reports "no such file"
            return
        images = _folder_images(where)
        if not images:
            self.skipped.append({"path": path, "reason": "no image files in the folder"})
        self.paths.extend(images)


def enrolment_plan(people: Sequence[str], folders: Sequence[str]) -> dict[str, PlannedEnrolment]:
    """Who to enrol from which files, in the order given.

    Args:
        people: ``NAME=PATH`` items (split at the first ``=``, so a PATH may contain ``=``; PATH is
            a photo or a folder of photos; the same NAME again adds to that person).
        folders: folders holding one sub-folder of photos per person, named after the person.

    Raises:
        FaceTrackError: an item is not ``NAME=PATH``, or a ``--folders`` path is not a folder.
    """
    plan: dict[str, PlannedEnrolment] = {}
    for item in people:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise FaceTrackError(f"--person expects NAME=PATH (a photo or a folder of photos), got {item!r}")
        plan.setdefault(name.strip(), PlannedEnrolment()).add(path)
    for root in folders:
        base = Path(root)
        if not base.is_dir():
            raise FaceTrackError(f"--folders expects a folder with one sub-folder per person, got {root!r}")
        for sub in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            plan.setdefault(sub.name, PlannedEnrolment()).add(str(sub))
    return plan


def cmd_enroll(args: argparse.Namespace) -> int:
    from facetrack.recognizer import FaceRecognizer

    many = bool(args.person or args.folders)
    if many and (args.name or args.images):
        raise FaceTrackError("give either --name NAME with image paths, or --person NAME=PATH / --folders DIR")
    if not many and not (args.name and args.images):
        raise FaceTrackError("enroll needs --name NAME and image paths, or --person NAME=PATH / --folders DIR")
    plan = enrolment_plan(args.person or [], args.folders or []) if many else {}
    if many and not plan:
        raise FaceTrackError("no person to enrol: the --folders folders have no sub-folders")
    cfg = _config(args)
    backend = _backend(cfg)
    rec = FaceRecognizer(backend, cfg, _library(cfg, backend))
    if not many:
        result = rec.enroll(args.name, list(args.images))
        _emit(result.to_json())
        return 0 if result.enrolled else 1
    # One process, one library, one recogniser; one atomic commit per person (FaceRecognizer.enroll):
    # a person whose photos are all unusable, or whose name is refused, writes nothing and the
    # others go on.
    failed = 0
    for name, planned in plan.items():
        out: dict[str, Any] = {"person": name, "enrolled": 0, "skipped": planned.skipped}
        if planned.paths:
            try:
                result = rec.enroll(name, list[str | Path](planned.paths))
            except FaceTrackError as err:
                out["error"] = str(err)
            else:
                out = result.to_json()
                out["skipped"] = planned.skipped + list(out["skipped"])
        failed += not out["enrolled"]
        _emit(out)
    return 1 if failed else 0


def cmd_recognize(args: argparse.Namespace) -> int:
    from facetrack.images import read_image
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
    from facetrack.images import read_image
    from facetrack.recognizer import FaceRecognizer

    cfg = _config(args)
    rec = FaceRecognizer(_backend(cfg), cfg)
    _emit(rec.verify(read_image(args.image1), read_image(args.image2)))
    return 0


def cmd_persons(args: argparse.Namespace) -> int:
    cfg = _config(args)
    _emit({"persons": [p.to_json() for p in _library_only(cfg).persons()]})
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    cfg = _config(args)
    removed = _library_only(cfg).forget(args.name)
    _emit({"person": args.name, "forgotten": True, "embeddings_removed": removed})
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    cfg = _config(args)
    person = _library_only(cfg).rename(args.name, args.to)
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


def cmd_find_faces(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile

    from facetrack.cluster import DEFAULT_CLUSTER_THRESHOLD
    from facetrack.findfaces import download_clip, find_faces

    if (args.video is None) == (args.clip is None):
        raise FaceTrackError("give either a VIDEO file or --clip <camera>/<clip id> (with --service-config)")
    if args.clip is not None:
        from facetrack.config.service import load_service_config
        from facetrack.record.storage import create_storage

        if not args.service_config:
            raise FaceTrackError("--clip needs --service-config (where the clips are stored)")
        service = load_service_config(args.service_config)
        cfg = service.defaults
        if args.db:
            cfg = dataclasses.replace(cfg, db_path=args.db)
    else:
        cfg = _config(args)
    backend = _backend(cfg)
    library = _library(cfg, backend)
    with tempfile.TemporaryDirectory(prefix="facetrack-clip-") as tmp:
        source = args.video
        if args.clip is not None:
            source = str(download_clip(create_storage(service.clips.storage), args.clip, tmp))
        result = find_faces(
            source,
            backend,
            library,
            cfg,
            annotated_path=args.annotated,
            cluster=args.clusters,
            cluster_threshold=args.cluster_threshold or DEFAULT_CLUSTER_THRESHOLD,
            progress=sys.stderr.isatty() and not args.no_progress,
        )
    if args.crops:
        result.write_crops(args.crops)
    payload = result.to_json(embeddings=not args.no_embeddings)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, ensure_ascii=False)
        _emit({"type": "find_faces", "json": args.json, "tracks": len(result.tracks), "clusters": len(result.clusters)})
    else:
        _emit(payload)
    return 0


def cmd_embeddings(args: argparse.Namespace) -> int:
    import base64
    from pathlib import Path

    cfg = _config(args)
    library = _library_only(cfg)
    records = library.embeddings(args.name)
    out = []
    for e in records:
        item: dict[str, Any] = {"embedding_id": e.embedding_id, "source": e.source, "created_at": e.created_at}
        if args.crops:
            folder = Path(args.crops)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{e.embedding_id}.jpg"
            path.write_bytes(e.crop_jpeg)
            item["crop"] = str(path)
        elif args.base64:
            item["crop_base64"] = base64.b64encode(e.crop_jpeg).decode("ascii")
        out.append(item)
    person = library.person(args.name)
    _emit({"person": person.name if person else args.name, "embeddings": out})
    return 0


def cmd_forget_embedding(args: argparse.Namespace) -> int:
    cfg = _config(args)
    library = _library_only(cfg)
    owner = library.embedding_owner(args.embedding_id)
    if owner is None:
        raise FaceTrackError(f"no embedding with id {args.embedding_id!r} in the face library")
    if args.name is not None and library.person(args.name) != owner:
        raise FaceTrackError(f"embedding {args.embedding_id} is not {args.name!r}'s (it is {owner.name!r}'s)")
    left = library.delete_embedding(args.embedding_id)
    _emit(
        {
            "person": owner.name,
            "person_id": owner.person_id,
            "embedding_id": args.embedding_id,
            "embeddings": left.embedding_count if left is not None else 0,
            "person_removed": left is None,
        }
    )
    return 0


def cmd_restore_library(args: argparse.Namespace) -> int:
    from facetrack.library.backup import backup_root, list_backups, restore
    from facetrack.objectstore import is_uri

    db = _config(args).db_path
    if is_uri(db):
        raise FaceTrackError("a library on an object store has no FaceTrack backups: use the bucket's versioning")
    if args.list:
        _emit({"backups": [{"name": b.name, "reason": b.reason, "created": b.created} for b in list_backups(db)]})
        return 0
    chosen, moved = restore(db, args.backup)
    moved_to = str(moved) if moved else None
    _emit({"library": db, "restored": chosen.name, "backups": str(backup_root(db)), "previous_moved_to": moved_to})
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

    sp = sub.add_parser(
        "enroll",
        help="enrol people from photos: --name NAME IMAGE..., or several at once with --person / --folders",
        description="Enrol one person (--name NAME IMAGE...) or several in one process "
        "(--person NAME=PATH ..., --folders DIR); one commit per person, one JSON line per person.",
    )
    common(sp, db=True)
    sp.add_argument("--name", help="the person the IMAGE paths show")
    sp.add_argument(
        "--person",
        action="extend",
        nargs="+",
        metavar="NAME=PATH",
        help="a person and a photo or a folder of photos; repeatable (the same NAME adds photos)",
    )
    sp.add_argument(
        "--folders",
        action="append",
        metavar="DIR",
        help="a folder with one sub-folder of photos per person, named after the person; repeatable",
    )
    sp.add_argument("images", nargs="*", metavar="IMAGE", help="photos of --name")
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

    sp = sub.add_parser(
        "find-faces",
        help="faces in a recorded video: per track the best crops, embeddings and identity; clusters by person",
    )
    common(sp, db=True)
    sp.add_argument("video", nargs="?", help="video file (or use --clip)")
    sp.add_argument("--clip", help="a stored alert clip by name, <camera>/<clip id> (needs --service-config)")
    sp.add_argument("--service-config", help="service configuration: clip storage, library and tracking settings")
    sp.add_argument("--annotated", help="write an annotated MP4 here")
    sp.add_argument("--clusters", action="store_true", help="group the tracks by person")
    sp.add_argument("--cluster-threshold", type=float, help="cosine similarity for one person (default 0.5)")
    sp.add_argument("--crops", help="write each track's best crops as JPEG into this folder")
    sp.add_argument("--json", help="write the JSON result to this file (stdout: a summary)")
    sp.add_argument("--no-embeddings", action="store_true", help="leave the embeddings out of the JSON")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sp.set_defaults(func=cmd_find_faces)

    sp = sub.add_parser("embeddings", help="list a person's embeddings (ids, sources, crops)")
    common(sp, db=True)
    sp.add_argument("--name", required=True)
    sp.add_argument("--crops", help="write the crops as <embedding id>.jpg into this folder")
    sp.add_argument("--base64", action="store_true", help="include the crops as base64 JPEG")
    sp.set_defaults(func=cmd_embeddings)

    sp = sub.add_parser("forget-embedding", help="remove one wrong embedding from a person")
    common(sp, db=True)
    sp.add_argument("embedding_id")
    sp.add_argument("--name", help="the person it must belong to (a safety check)")
    sp.set_defaults(func=cmd_forget_embedding)

    sp = sub.add_parser("restore-library", help="replace a damaged face library with its newest intact backup")
    common(sp, db=True)
    sp.add_argument("--from", dest="backup", help="backup folder name (default: the newest intact one)")
    sp.add_argument("--list", action="store_true", help="list the backups, restore nothing")
    sp.set_defaults(func=cmd_restore_library)

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
