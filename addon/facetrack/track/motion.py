"""Motion-gated detection: a cheap per-camera motion check decides when the face detector runs.

The motion check is frame differencing against a running-average background on a downscaled
grey frame, the method of Frigate's ``ImprovedMotionDetector`` (blakeblackshear/frigate,
``frigate/motion/improved_motion.py``, MIT; the detector behind Frigate's "motion first, then
object detection only where something moved"): grey, blur, ``absdiff`` against the average,
threshold, dilate, external contours, bounding boxes. Written here with OpenCV calls only (no
code taken), with thresholds of our own (below). It was chosen over OpenCV's background
subtractors (``cv2.createBackgroundSubtractorMOG2`` / ``KNN`` with ``detectShadows=False``)
because it costs about a fifth of their time on the same 320x180 grey frame (0.3 ms against
1.6-1.8 ms per frame measured on this project's 2-core machine), it has no hidden model state to
tune (history, variance threshold) and it is deterministic; both detect the same moving people.

:class:`DetectionGate` is the rule :class:`~facetrack.track.FaceTracker` applies before running
the detector on a frame (see :meth:`DetectionGate.should_detect`). When nothing is tracked and
only part of the frame moved, the detector runs only on windows around the moving regions
(:func:`detection_windows`, :func:`detect_in_windows`), cut from the frame downscaled exactly as
the backend downscales a whole frame and aligned on the detector's 32-px stride grid, so it sees
the same pixels at the same feature-map positions: on vtest.avi's pedestrians the windowed
detections have the same boxes and scores (to 0.01) as the whole frame's, at about 2/3 of the
cost.

Thresholds and their sources:

- :data:`MOTION_WIDTH` 320 px: Frigate scales to 100 px high (about 178 px wide at 16:9) to find
  people; faces are smaller than people, so twice that. A face the detector can find (about 20 px
  on a 1280-px-wide frame at ``detector_input_size`` 640) is still 5 px here, and the body
  moving with it is much larger.
- :data:`PIXEL_THRESHOLD` 20 grey levels (Frigate: 30 after contrast stretching): more sensitive,
  since a missed motion may be a missed face while a false motion only costs one detection.
- :data:`MIN_REGION_AREA` 16 px of the motion frame (Frigate's ``contour_area`` default is 10
  at its smaller scale): a dilated speck of noise is 9 px.
- :data:`BACKGROUND_ALPHA` 0.05: weight of each new frame in the running average (Frigate's
  ``frame_alpha`` 0.01, 0.2 while calibrating); a change of 100 grey levels that stays (a parked
  car, a person who stopped) is absorbed after about 30 frames (3 s at 10 frames/s), after which
  the periodic detection (``detect_fps``) still looks at it.
- :data:`RECALIBRATE_FRACTION` 0.5: more than half of the frame changed at once (lights, an IR
  switch, a scene cut): the whole frame counts as moving and the background starts over from it
  (Frigate's ``lightning_threshold`` 0.8 recalibrates the same way).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facetrack.inference.base import Detection, Frame, InferenceBackend

#: Width of the motion frame, pixels (height by the frame's aspect ratio).
MOTION_WIDTH = 320
#: Grey-level difference from the background above which a motion-frame pixel moved.
PIXEL_THRESHOLD = 20
#: Smallest moving region kept, pixels of the motion frame (bounding-box area).
MIN_REGION_AREA = 16
#: Weight of each frame in the running-average background.
BACKGROUND_ALPHA = 0.05
#: Fraction of moving pixels beyond which the background is re-seeded from the current frame.
RECALIBRATE_FRACTION = 0.5

#: A detection window is a moving region grown by this fraction of its longer side on each side,
#: and by at least :data:`WINDOW_MIN_PAD` px of the detector's input: a face keeps the context
#: YuNet's deepest (stride-32) layers see, so its score is the whole frame's (with 32 px, scores
#: of 10-px heads in vtest.avi moved by up to 0.04 and one track of 16 was lost).
WINDOW_PAD = 0.25
WINDOW_MIN_PAD = 64
#: Shortest window side, pixels of the detector's input (YuNet's smallest anchors are 10-16 px).
WINDOW_MIN_SIDE = 64
#: Windows covering more than this fraction of the frame: the whole frame is detected instead.
WINDOW_MAX_FRACTION = 0.5

#: Windows start on multiples of this many pixels of the detector's input (its largest stride).
WINDOW_GRID = 32

#: Seconds between whole-frame detections of a scene in which nothing moved since the last one
#: (with ``detect_fps`` > 0): a slow change below the motion threshold (dusk) is still looked at,
#: for 30 ms of a 720p detection every 10 s instead of every second (3 % of a core).
STILL_RECHECK_SECONDS = 10.0
#: Default ``motion_detect_fps``: 0, the detector runs on every frame that moves. A rate (e.g. 5,
#: Frigate's default detect fps) lets one machine carry more cameras that watch people pass by:
#: the first moving frame after a quiet one is still detected at once, and every frame is for
#: :data:`FOUND_HOLD_SECONDS` after a face was found, but a face that first shows on a skipped
#: frame is found up to ``1 / motion_detect_fps`` s later, and ByteTrack confirms a face that
#: flickers around the detector's threshold (a face of 10-20 px) from other frames: on the
#: 25-frames/s MOT17-13 clip, an 11-px face's track started 5 frames later at 5 detections/s
#: (benchmarks/README.md, "Motion-gated detection"). Off by default so the gate loses nothing.
MOTION_DETECT_FPS = 0.0
#: With a ``motion_detect_fps``, seconds after the detector last found a face during which every
#: frame is detected on the whole frame, as while a track lives: a small face far away flickers
#: around the detector's threshold and ByteTrack confirms its track only after ``credence_count``
#: detections; without the hold, frames skipped between its hits delayed a 19-px face's track by
#: 5 frames on vtest.avi at 720p. One second: ByteTrack's default track buffer (30 frames at 30/s).
FOUND_HOLD_SECONDS = 1.0
#: Dilation kernel closing one-pixel gaps in the motion mask.
_DILATE = np.ones((3, 3), np.uint8)

Box = tuple[int, int, int, int]


class MotionDetector:
    """Finds what moved in a camera's frames (call :meth:`update` on every frame, in order).

    Args:
        width: width of the motion frame, pixels (frames narrower than this are not upscaled).
        threshold: grey-level difference (0-255) from the background that counts as moving.
        min_area: smallest region kept, pixels of the motion frame.
        alpha: weight of each frame in the running-average background (0-1).

    Attributes:
        moving: whether the last frame given to :meth:`update` moved.
        regions: the moving regions of the last frame (see :meth:`update`).
        thumbnail: the last frame downscaled to the motion frame's size, ``(h, w, 3) uint8`` BGR
            (the scene-cut detector reuses it); ``None`` before the first frame.
    """

    def __init__(
        self,
        width: int = MOTION_WIDTH,
        threshold: float = PIXEL_THRESHOLD,
        min_area: int = MIN_REGION_AREA,
        alpha: float = BACKGROUND_ALPHA,
    ) -> None:
        if width < 8:
            raise ValueError(f"motion frame width must be at least 8 px, got {width}")
        self.width = width
        self.threshold = threshold
        self.min_area = min_area
        self.alpha = alpha
        self._background: npt.NDArray[np.float32] | None = None
        self.moving = False
        self.regions: list[Box] = []
        self.thumbnail: Frame | None = None

    def downscale(self, frame_bgr: Frame) -> Frame:
        """``frame_bgr`` (``(H, W, 3) uint8``) at the motion frame's size, ``(h, w, 3) uint8``.

        Bilinear: area averaging costs 5-15 times more on a 720p frame (1.6 ms against 0.3 ms) and
        the blur of :meth:`update` removes the aliasing that matters here.
        """
        h, w = frame_bgr.shape[:2]
        if w <= self.width:
            return frame_bgr
        size = (self.width, max(1, round(h * self.width / w)))
        return np.asarray(cv2.resize(frame_bgr, size, interpolation=cv2.INTER_LINEAR), dtype=np.uint8)

    def update(self, frame_bgr: Frame) -> list[Box]:
        """Compare ``frame_bgr`` with the background, then blend it into the background.

        Args:
            frame_bgr: ``(H, W, 3) uint8`` BGR, the camera's full frame.

        Returns:
            The moving regions, ``(x1, y1, x2, y2)`` in ``frame_bgr``'s pixels, largest first;
            the whole frame for the first frame (nothing to compare with) and when more than
            :data:`RECALIBRATE_FRACTION` of it changed at once.
        """
        h, w = frame_bgr.shape[:2]
        thumb = self.downscale(frame_bgr)
        self.thumbnail = thumb
        grey = cv2.GaussianBlur(cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY), (3, 3), 0)
        whole = [(0, 0, w, h)]
        if self._background is None or self._background.shape != grey.shape:
            self._background = grey.astype(np.float32)
            self.moving, self.regions = True, whole
            return self.regions
        delta = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        _, mask = cv2.threshold(delta, self.threshold, 255, cv2.THRESH_BINARY)
        if cv2.countNonZero(mask) > RECALIBRATE_FRACTION * mask.size:
            self._background = grey.astype(np.float32)
            self.moving, self.regions = True, whole
            return self.regions
        mask = cv2.dilate(mask, _DILATE)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = w / grey.shape[1], h / grey.shape[0]
        boxes: list[Box] = []
        for c in contours:
            x, y, bw, bh = cv2.boundingRect(c)
            if bw * bh >= self.min_area:
                boxes.append(
                    (int(x * sx), int(y * sy), min(w, int(np.ceil((x + bw) * sx))), min(h, int(np.ceil((y + bh) * sy))))
                )
        boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
        cv2.accumulateWeighted(grey, self._background, self.alpha)
        self.moving, self.regions = bool(boxes), boxes
        return boxes

    def reset(self) -> None:
        """Forget the background (a new source): the next frame counts as moving."""
        self._background = None
        self.moving, self.regions, self.thumbnail = False, [], None


def detection_windows(regions: list[Box], width: int, height: int, scale: float = 1.0) -> list[Box] | None:
    """The parts of a frame to run the detector on instead of the whole frame.

    Each moving region is grown (:data:`WINDOW_PAD`, :data:`WINDOW_MIN_PAD` / ``scale``, at least
    :data:`WINDOW_MIN_SIDE` / ``scale`` px a side) and overlapping windows are merged until none
    overlap (so no face is detected twice).

    Args:
        regions: moving regions, ``(x1, y1, x2, y2)`` full-frame pixels.
        width / height: the frame's size, pixels.
        scale: the detector's downscale of the full frame (``detector_input_size / max(W, H)``,
            at most 1).

    Returns:
        Windows in full-frame pixels, or ``None`` when the whole frame should be detected (no
        region, or the windows would cover more than :data:`WINDOW_MAX_FRACTION` of it).
    """
    if not regions:
        return None
    min_side = WINDOW_MIN_SIDE / max(scale, 1e-6)
    boxes: list[list[float]] = []
    for x1, y1, x2, y2 in regions:
        pad = max(WINDOW_MIN_PAD / max(scale, 1e-6), WINDOW_PAD * max(x2 - x1, y2 - y1))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        hw = max((x2 - x1) / 2 + pad, min_side / 2)
        hh = max((y2 - y1) / 2 + pad, min_side / 2)
        boxes.append([max(0.0, cx - hw), max(0.0, cy - hh), min(float(width), cx + hw), min(float(height), cy + hh)])
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
    if area > WINDOW_MAX_FRACTION * width * height:
        return None
    return [(int(b[0]), int(b[1]), int(np.ceil(b[2])), int(np.ceil(b[3]))) for b in boxes]


def detect_in_windows(backend: InferenceBackend, frame_bgr: Frame, windows: list[Box], scale: float) -> list[Detection]:
    """Run ``backend.detect`` on each window of ``frame_bgr``, seen as in a whole-frame detection.

    The frame is downscaled by ``scale`` as the backend would (area interpolation to
    ``round(W * scale) x round(H * scale)``), and the windows are cut from that image, so the
    detector gets the very pixels it would see without windows; boxes and landmarks come back in
    ``frame_bgr``'s pixels, highest score first.
    """
    h, w = frame_bgr.shape[:2]
    small = frame_bgr
    if scale < 1.0:
        small = np.asarray(
            cv2.resize(frame_bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), dtype=np.uint8
        )
    fx, fy = w / small.shape[1], h / small.shape[0]
    out: list[Detection] = []
    for x1, y1, x2, y2 in windows:
        # On the detector's 32-px stride grid: the window's feature maps line up with the whole
        # frame's (YuNet's strides are 8, 16 and 32), so its anchors see the same pixels.
        g = WINDOW_GRID
        sx1, sy1 = int(x1 / fx) // g * g, int(y1 / fy) // g * g
        sx2 = min(small.shape[1], -(-int(np.ceil(x2 / fx)) // g) * g)
        sy2 = min(small.shape[0], -(-int(np.ceil(y2 / fy)) // g) * g)
        if sx2 - sx1 < 2 or sy2 - sy1 < 2:
            continue
        for d in backend.detect(np.ascontiguousarray(small[sy1:sy2, sx1:sx2])):
            box = (d.box + np.array([sx1, sy1, sx1, sy1], np.float32)) * np.array([fx, fy, fx, fy], np.float32)
            lm = (d.landmarks + np.array([sx1, sy1], np.float32)) * np.array([fx, fy], np.float32)
            out.append(Detection(box.astype(np.float32), d.score, lm.astype(np.float32)))
    out.sort(key=lambda d: -d.score)
    return out


def _every(ts: float, last: float, rate: float) -> bool:
    """At least ``1 / rate`` seconds passed from ``last`` to ``ts`` (never for ``rate`` 0)."""
    return rate > 0 and ts - last >= 1.0 / rate - 1e-6


class DetectionGate:
    """Whether the face detector runs on a frame: motion, live tracks, or the periodic timer.

    The detector runs on a frame when any of these holds:

    (a) something moved (:class:`MotionDetector`); with a ``motion_detect_fps`` and nothing
        tracked, the first moving frame after a quiet one, then at most ``motion_detect_fps``
        frames a second;
    (b) the tracker holds a track, confirmed, tentative or lost-but-kept: ByteTrack's association
        and the re-identification backoff count frames, so while a track exists every frame is
        detected, exactly as without the gate; with a ``motion_detect_fps``, the same for
        :data:`FOUND_HOLD_SECONDS` after the detector last found a face (:meth:`found`,
        :meth:`holding`);
    (c) ``detect_fps`` says so: at most ``1 / detect_fps`` seconds pass between two detections
        even when nothing moves (a person who stopped, absorbed into the motion background, is
        still found), as long as something moved since the last whole-frame detection; a scene
        that has not moved since the detector last looked at all of it holds no new face, and is
        looked at again only every :data:`STILL_RECHECK_SECONDS`. ``0`` detects only on motion or
        tracks.

    With ``enabled`` false every frame is detected (the motion check does not run at all).

    When nothing is tracked and only part of the frame moved, the detector looks only there
    (:meth:`windows`), at the scale it would see the whole frame: a new face comes with motion.

    Args:
        detect_fps: detections per second when nothing moves and nothing is tracked (>= 0).
        enabled: the gate is on.
        motion: the motion detector (default: a new :class:`MotionDetector`).
        motion_detect_fps: detections per second while something moves and nothing is tracked
            (>= 0; 0, the default :data:`MOTION_DETECT_FPS`: every moving frame).

    Raises:
        ValueError: ``detect_fps`` or ``motion_detect_fps`` is negative.
    """

    def __init__(
        self,
        detect_fps: float = 1.0,
        enabled: bool = True,
        motion: MotionDetector | None = None,
        motion_detect_fps: float = MOTION_DETECT_FPS,
    ) -> None:
        if detect_fps < 0:
            raise ValueError(f"detect_fps must be >= 0, got {detect_fps}")
        if motion_detect_fps < 0:
            raise ValueError(f"motion_detect_fps must be >= 0, got {motion_detect_fps}")
        self.detect_fps = detect_fps
        self.motion_detect_fps = motion_detect_fps
        self.enabled = enabled
        self.motion = motion or MotionDetector()
        self._last_detect: float | None = None
        self._last_full: float | None = None
        self._moved = True  # something moved since the last whole-frame detection
        self._quiet = False  # nothing moved on the frame before
        self._last_found: float | None = None
        self._ts = 0.0
        #: Frames seen and frames detected since the gate was made (for statistics).
        self.frames = 0
        self.detected = 0

    def observe(self, frame_bgr: Frame) -> None:
        """Run the motion check on ``frame_bgr`` (``(H, W, 3) uint8``; every processed frame, in
        order: while nothing moves, the camera's idle stride processes every other frame)."""
        if self.enabled:
            self.motion.update(frame_bgr)
            self._moved = self._moved or self.motion.moving

    def should_detect(self, ts: float, tracking: bool) -> bool:
        """Whether to run the detector on the frame last given to :meth:`observe`.

        Args:
            ts: the frame's time, seconds (non-decreasing within a source; a step back restarts
                the timer).
            tracking: the tracker holds at least one track (confirmed, tentative or lost but kept).
        """
        self.frames += 1
        self._ts = ts
        last = self._last_detect
        due = (
            not self.enabled
            or tracking
            or last is None
            or ts < last
            or (
                self.motion.moving
                and (self._quiet or self.motion_detect_fps <= 0 or _every(ts, last, self.motion_detect_fps))
            )
            or (_every(ts, last, self.detect_fps) and (self._moved or ts - last >= STILL_RECHECK_SECONDS - 1e-6))
        )
        if due:
            self._last_detect = ts
            self.detected += 1
        self._quiet = not self.motion.moving
        return due

    def found(self, ts: float, faces: int) -> None:
        """Note that the detector ran on the frame at ``ts`` (seconds) and found ``faces`` faces
        (kept only with a ``motion_detect_fps``: it starts :meth:`holding`)."""
        if faces and self.motion_detect_fps > 0:
            self._last_found = ts

    def holding(self, ts: float) -> bool:
        """Whether the frame at ``ts`` (seconds) is within :data:`FOUND_HOLD_SECONDS` of the last
        face found (with a ``motion_detect_fps``): the tracker then treats it as a frame with a
        live track (every frame, the whole frame)."""
        last = self._last_found
        return self.enabled and last is not None and 0 <= ts - last < FOUND_HOLD_SECONDS

    def windows(self, width: int, height: int, tracking: bool, scale: float) -> list[Box] | None:
        """Where to detect on a frame :meth:`should_detect` allowed: the windows around what moved
        (:func:`detection_windows`) when nothing is tracked, else ``None`` (the whole frame).

        The whole frame is also detected at least ``detect_fps`` times a second while things move
        (the periodic look for a person standing still outside the moving regions)."""
        ts, last = self._ts, self._last_full
        full_due = last is None or ts < last or _every(ts, last, self.detect_fps)
        wins = None
        if self.enabled and not tracking and self.motion.moving and not full_due:
            wins = detection_windows(self.motion.regions, width, height, scale)
        if wins is None:
            self.whole_frame()
        return wins

    def whole_frame(self) -> None:
        """Note that the detector looks at the whole frame last given to :meth:`should_detect`
        (:meth:`windows` notes it itself)."""
        self._last_full = self._ts
        self._moved = False
