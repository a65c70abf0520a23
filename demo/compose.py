"""Compose the demo clip: real face photos moving over a real street background, H.264-encoded.

Three people (dlib's "johns" face chips, see NOTICE.md): John_Salley and John_Savage are enrolled
from their first 3 photos; the clip shows their other photos, plus John_Simm, who is never enrolled
(a stranger). John_Salley leaves the frame and comes back 1.6 s later, which exercises the
recent-track gallery. Writes the MP4 and a ground-truth JSON (person and box per frame).

Usage: python demo/compose.py OUT.mp4 [GT.json]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
FPS = 25
W, H = 1280, 720
FRAMES = 260
FACE = 190  # pasted chip size, pixels
ENROLLED = ("John_Salley", "John_Savage")
STRANGER = "John_Simm"
# person, first frame, last frame, (x, y) at first frame, (x, y) at last frame
APPEARANCES = [
    ("John_Salley", 0, 120, (40, 120), (560, 150)),
    ("John_Savage", 30, 200, (1060, 420), (420, 380)),
    (STRANGER, 90, 230, (700, 60), (1040, 120)),
    ("John_Salley", 160, 259, (80, 430), (300, 400)),  # comes back 1.6 s after leaving
]


def photos(person: str) -> list[Path]:
    return sorted((HERE / "faces" / person).glob("*.jpg"))


def enrolment_photos(person: str) -> list[Path]:
    """The photos to enrol (never shown in the clip)."""
    return photos(person)[:3]


def enrol_demo_people(recognizer: Any) -> None:
    """Enrol the ENROLLED people from their 3 enrolment photos each (a facetrack ``FaceRecognizer``).

    Raises:
        RuntimeError: a photo did not enrol (its reason is in the message).
    """
    for person in ENROLLED:
        result = recognizer.enroll(person, list(enrolment_photos(person)))
        if result.enrolled != 3:
            raise RuntimeError(f"the demo photos of {person} did not all enrol: {result.skipped}")


def compose(out: Path, gt_path: Path | None = None) -> dict[str, object]:
    bg = cv2.imread(str(HERE / "background.jpg"))
    assert bg is not None and bg.shape[:2] == (H, W)
    chips = {p: [cv2.resize(cv2.imread(str(f)), (FACE, FACE)) for f in photos(p)[3:]] for p, *_ in APPEARANCES}
    # Feathered mask so the chip edges do not form a hard square.
    mask = np.zeros((FACE, FACE), np.float32)
    cv2.ellipse(mask, (FACE // 2, FACE // 2), (FACE // 2 - 6, FACE // 2 - 2), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 6)[..., None]
    gt: dict[str, list[dict[str, object]]] = {}
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{W}x{H}", "-r", str(FPS), "-i", "pipe:0", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "26", "-pix_fmt", "yuv420p", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    rng = np.random.default_rng(0)
    for i in range(FRAMES):
        frame = bg.copy().astype(np.float32)
        for person, a, b, (x0, y0), (x1, y1) in APPEARANCES:
            if not a <= i <= b:
                continue
            t = (i - a) / max(1, b - a)
            x, y = round(x0 + t * (x1 - x0)), round(y0 + t * (y1 - y0))
            chip = chips[person][((i - a) // 40) % len(chips[person])]  # a new photo every 1.6 s
            roi = frame[y : y + FACE, x : x + FACE]
            roi[:] = roi * (1 - mask) + chip.astype(np.float32) * mask
            gt.setdefault(str(i), []).append({"person": person, "box": [x, y, x + FACE, y + FACE]})
        frame += rng.normal(0, 3, frame.shape)  # sensor noise, so compression has real work to do
        proc.stdin.write(np.clip(frame, 0, 255).astype(np.uint8).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("ffmpeg failed")
    truth = {"fps": FPS, "frames": FRAMES, "enrolled": list(ENROLLED), "stranger": STRANGER, "boxes": gt}
    if gt_path is not None:
        gt_path.write_text(json.dumps(truth))
    return truth


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    compose(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
