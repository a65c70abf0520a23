"""``facetrack serve``: every configured camera over one face library, talking MQTT.

Read top to bottom: :class:`FaceTrackService` starts the MQTT client, one :class:`CameraWorker`
thread per camera and a :class:`~facetrack.commands.CommandHandler`; each worker runs the camera
pipeline (open -> track -> events/alerts -> state), retrying a failing source with backoff; SIGTERM
stops everything cleanly (tracks are ended and their events flushed, ``status`` goes ``offline``).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2

from facetrack import __version__
from facetrack.alerts import Alert, AlertPolicy
from facetrack.annotate import draw_faces
from facetrack.camera import open_source
from facetrack.camera.stream import STREAM_TIMEOUT_SECONDS
from facetrack.commands import CommandHandler, LibraryVerbsContext
from facetrack.comms.discovery import camera_discovery, config_topic, person_discovery
from facetrack.comms.mqtt import CONTRACT_VERSION, MqttClient
from facetrack.comms.payloads import (
    alert_payload,
    clip_payload,
    iso,
    library_payload,
    seen_payload,
    state_payload,
    track_payload,
)
from facetrack.config.service import CameraConfig, ServiceConfig, local_state_dir
from facetrack.errors import FaceTrackError
from facetrack.inbox import UnknownInbox
from facetrack.inbox.commands import inbox_verbs
from facetrack.inbox.feature import InboxFeature, UrlSigning
from facetrack.inbox.web import InboxCropRoute
from facetrack.inference import InferenceBackend, backend_from_config
from facetrack.inference.base import InferenceUnavailableError
from facetrack.library import FaceLibrary
from facetrack.library.sync import LibraryWatcher
from facetrack.recognizer import FaceRecognizer
from facetrack.record.clips import ClipRecorder, StoredClip, cleanup_legacy_temp, recover_clips
from facetrack.record.storage import ClipStorage, clip_key, create_storage, new_clip_id
from facetrack.track import FaceTracker
from facetrack.track.face_tracker import BestCrop, Track
from facetrack.track.identity import IdentityState
from facetrack.web.api import AlertHistory, CameraStatus, ClipLinks, WebUi
from facetrack.web.frames import FrameHub
from facetrack.web.limits import HttpLimits
from facetrack.web.server import WebServer
from facetrack.web.signing import UrlSigner, secret_and_stream_token

_LOG = logging.getLogger(__name__)
#: Seconds between periodic retained ``state`` updates of a camera.
STATE_INTERVAL = 10.0
#: Recently ended tracks whose best crops are kept for ``enroll_track`` (per camera).
RECENT_TRACKS = 32
#: Seconds between clip retention passes (age and total size).
PURGE_INTERVAL = 600.0
#: A known person in view is reported on ``<prefix>/seen/<person_id>`` at least this often (s).
SEEN_INTERVAL = 10.0
#: Seconds start-up waits for the encoders of a killed engine to finish the clips they were writing.
RECOVERY_WAIT_S = 30.0


@dataclass(slots=True)
class PersonSighting:
    """When and where a person was last recognised."""

    last_seen: float
    last_camera: str


class CameraWorker(threading.Thread):
    """Runs one camera until ``stop`` is set.

    Args:
        camera: its configuration.
        library: the shared face library.
        publish: ``publish(topic_parts, payload, qos, retain)`` (MQTT or a test sink).
        on_alert: called with ``(alert, payload, snapshot_jpeg)`` after the alert is published.
        on_sighting: called with a ``seen`` payload when a known person is identified, and every
            ``SEEN_INTERVAL`` s while they stay in view.
        stop: set to stop the worker.
        reconnect_max_seconds: cap of the retry backoff for a failing source.
        source_timeout: seconds a network source may take to deliver its first frame, then each
            next one, before it is given up (reported ``offline``) and reopened.
    """

    def __init__(
        self,
        camera: CameraConfig,
        library: FaceLibrary,
        publish: Callable[[tuple[str, ...], dict[str, Any], int, bool], None],
        on_alert: Callable[[Alert, dict[str, Any], bytes | None], None],
        on_sighting: Callable[[dict[str, Any]], None],
        stop: threading.Event,
        reconnect_max_seconds: float = 60.0,
        backend: InferenceBackend | None = None,
        hub: FrameHub | None = None,
        recorder: ClipRecorder | None = None,
        urls: Callable[[str], dict[str, str | None]] | None = None,
        clip_url: Callable[[str], str | None] | None = None,
        on_unknown_ended: Callable[[str, Track], None] | None = None,
        ignored: Callable[[Any], str | None] | None = None,
        source_timeout: float = STREAM_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(name=f"camera-{camera.name}", daemon=True)
        self.source_timeout = source_timeout
        self.hub = hub
        self.recorder = recorder
        self.urls = urls
        self.clip_url = clip_url
        self.on_unknown_ended = on_unknown_ended  # an ended track decided unknown -> the inbox
        self.ignored = ignored  # mean embedding -> the ignored inbox group it belongs to, or None
        self.camera = camera
        self.library = library
        self.publish = publish
        self.on_alert = on_alert
        self.on_sighting = on_sighting
        self.stop = stop
        self.reconnect_max = reconnect_max_seconds
        self.backend = backend or backend_from_config(camera.tracking)
        self.policy = AlertPolicy(camera.name, camera.alerts)
        self.state = "starting"
        self.error: str | None = None
        self.fps = 0.0
        self.faces = 0
        self.frames = 0
        self.failed_frames = 0
        self._crops_lock = threading.Lock()
        self._tracker: FaceTracker | None = None
        self._recent: OrderedDict[int, list[BestCrop]] = OrderedDict()
        self._seen_at: dict[int, float] = {}  # track id -> monotonic time of its last "seen"

    # ---- state ------------------------------------------------------------------------------

    def state_payload(self) -> dict[str, Any]:
        """The camera's retained ``state`` payload now."""
        urls = self.urls(self.camera.name) if self.urls else {}
        return state_payload(
            self.camera.name, self.state, self.fps, self.faces, self.error,
            stream_url=urls.get("stream_url"), snapshot_url=urls.get("snapshot_url"), mjpeg_url=urls.get("mjpeg_url"),
        )  # fmt: skip

    def _set_state(self, state: str, error: str | None = None) -> None:
        changed = (state, error) != (self.state, self.error)
        self.state, self.error = state, error
        if changed:
            _LOG.info("camera %s: %s%s", self.camera.name, state, f" ({error})" if error else "")
            self.publish((self.camera.name, "state"), self.state_payload(), 1, True)

    def best_crops(self, track_id: int) -> list[BestCrop]:
        """Best crops (with embeddings) of a live or recently ended track, best first."""
        with self._crops_lock:
            t = self._tracker
            if t is not None and track_id in t.tracks:
                crops = list(t.tracks[track_id].best)
            elif t is not None and track_id in t.ended_crops:
                crops = list(t.ended_crops[track_id])
            else:
                crops = list(self._recent.get(track_id, []))
        return sorted(crops, key=lambda c: -c.rank)

    # ---- main loop ------------------------------------------------------------------------------

    def run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                # A network source opens and reads in its own ffmpeg process, with a deadline and
                # watching ``stop``: a hanging camera delays neither the others nor shutdown.
                video = open_source(self.camera.source, self.source_timeout, self.stop)
            except FaceTrackError as err:
                if self.stop.is_set():
                    break
                self._set_state("offline", str(err))
                self.stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            delay = 1.0
            try:
                self._run_source(video)
            except InferenceUnavailableError as err:  # no device/runtime/model: say so, retry slowly
                _LOG.error("camera %s: inference unavailable: %s", self.camera.name, err)
                self._set_state("offline", str(err))
                delay = self.reconnect_max
            except Exception as err:  # never let one camera take the service down
                _LOG.exception("camera %s failed", self.camera.name)
                self._set_state("offline", f"{type(err).__name__}: {err}")
            finally:
                video.close()
            if not self.stop.is_set():
                # The stream dropped or the file ended: report it and retry (a file replays).
                self._set_state("offline", self.error or video.error or "source ended")
                self.stop.wait(delay)
        if self.recorder is not None:
            self.recorder.close()  # finish the clips in progress: complete files, never corrupt ones
        self._set_state("offline", None)

    def _run_source(self, video: Any) -> None:
        target = self.camera.fps
        rate = min(video.fps, target) if target else video.fps
        tracker = FaceTracker(self.backend, self.library, self.camera.tracking, fps=rate)
        with self._crops_lock:
            self._tracker = tracker
        self.error = None
        self._set_state("online")
        started = time.monotonic()
        window: deque[float] = deque(maxlen=50)
        last_state = 0.0
        processed = 0
        next_ts = 0.0
        for _, ts, frame in video.frames():
            if self.stop.is_set():
                break
            if target:
                if ts + 1e-6 < next_ts:
                    continue  # over the camera's fps cap: decoded, not processed
                next_ts = max(next_ts + 1.0 / target, ts)
            if not video.live:  # play files at their own pace, like a camera would
                ahead = ts - (time.monotonic() - started)
                if ahead > 0 and self.stop.wait(ahead):
                    break
            captured = time.time()
            index, processed = processed, processed + 1
            try:
                result = tracker.process(frame, index, ts)
            except InferenceUnavailableError:
                raise  # every frame would fail: the camera reports it (run) instead
            except Exception:  # one bad frame never stops a camera
                self.failed_frames += 1
                _LOG.exception("camera %s: frame %d failed; skipped", self.camera.name, index)
                continue
            self.frames += 1
            self.faces = len(result.faces)
            if self.hub is not None:  # keeps a reference; draws and encodes only if watched
                self.hub.publish(self.camera.name, frame, partial(draw_faces, faces=result.faces))
            if self.recorder is not None:
                self.recorder.add_frame(index, ts, frame, result.faces, rate)
            now = time.monotonic()
            window.append(now)
            if len(window) > 1:
                self.fps = (len(window) - 1) / max(window[-1] - window[0], 1e-6)
            for event in result.events:
                self._emit_event(event, frame, captured)
            self._feed_inbox(tracker.ended.values())
            for face in result.faces:
                if face.state is IdentityState.KNOWN and now - self._seen_at.get(face.track_id, 0.0) >= SEEN_INTERVAL:
                    self._sighting(face.track_id, tracker.tracks[face.track_id].voter, captured, now)
            if now - last_state >= STATE_INTERVAL:
                last_state = now
                self.publish((self.camera.name, "state"), self.state_payload(), 1, True)
        for event in tracker.finish():
            self._emit_event(event, None, time.time())
        self._feed_inbox(tracker.ended.values())
        with self._crops_lock:
            self._recent.update(tracker.ended_crops)
            while len(self._recent) > RECENT_TRACKS:
                self._recent.popitem(last=False)
            self._tracker = None
        self.faces = 0

    def _feed_inbox(self, ended: Iterable[Track]) -> None:
        """Hand ended tracks decided unknown (with usable faces) to the unknown-face inbox."""
        if self.on_unknown_ended is None:
            return
        for track in ended:
            if track.voter.state is not IdentityState.UNKNOWN or not track.best:
                continue
            try:
                self.on_unknown_ended(self.camera.name, track)
            except Exception:  # the inbox must never stop a camera
                _LOG.exception("camera %s: track %d could not enter the inbox", self.camera.name, track.track_id)

    def _ignored_track(self, event: Any) -> bool:
        """An unknown track whose face is an ignored inbox group (the postman): no alert."""
        if self.ignored is None or event.type != "identity" or event.person_id is not None:
            return False
        track = self._tracker.tracks.get(event.track_id) if self._tracker is not None else None
        mean = track.mean_embedding if track is not None else None
        group = self.ignored(mean) if mean is not None else None
        if group is not None:
            _LOG.info("camera %s: track %d is ignored group %s: no alert", self.camera.name, event.track_id, group)
        return group is not None

    def _sighting(self, track_id: int, voter: Any, captured: float, now: float) -> None:
        self._seen_at[track_id] = now
        self.on_sighting(
            seen_payload(self.camera.name, track_id, voter.person_id, voter.name, voter.similarity, captured)
        )

    def _emit_event(self, event: Any, frame: Any, captured: float) -> None:
        self.publish((self.camera.name, "track"), track_payload(self.camera.name, event, captured), 0, False)
        if event.type == "identity" and event.person_id is not None:
            self.on_sighting(
                seen_payload(
                    self.camera.name, event.track_id, event.person_id, event.person, event.similarity, captured
                )
            )
            self._seen_at[event.track_id] = time.monotonic()
        if event.type == "track_ended":
            self._seen_at.pop(event.track_id, None)
        if self._ignored_track(event):
            return
        alert = self.policy.consider(event, time.monotonic())
        if alert is None:
            return
        snapshot = _snapshot(frame, event.bbox) if frame is not None else None
        urls: dict[str, str | None] = {"snapshot_url": None, "clip_url": None}
        clip_id = None
        if self.recorder is not None and frame is not None and self.clip_url is not None:
            # The clip is complete a few seconds from now; its URLs are known already.
            clip_id = self.recorder.start_clip(new_clip_id(captured, alert.alert_id))
            urls = {
                "snapshot_url": self.clip_url(clip_key(self.camera.name, clip_id, "snapshot")),
                "clip_url": self.clip_url(clip_key(self.camera.name, clip_id, "original")),
            }
        payload = alert_payload(alert, captured, **urls)
        self.publish((self.camera.name, "alert"), payload, 1, False)
        if clip_id is not None and self.recorder is not None:
            self.recorder.note_alert(clip_id, payload, snapshot)
        self.on_alert(alert, payload, snapshot)


def _snapshot(frame: Any, bbox: list[float], margin: float = 0.6) -> bytes | None:
    """JPEG of the face with some context around it (the alert's face snapshot)."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    crop = frame[max(0, int(y1 - my)) : min(h, int(y2 + my)), max(0, int(x1 - mx)) : min(w, int(x2 + mx))]
    if crop.size == 0:
        return None
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return bytes(buf) if ok else None


class FaceTrackService:
    """The whole engine: MQTT, cameras, commands, notifications.

    Args:
        config: the service configuration.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.command_backend = backend_from_config(config.defaults)
        self.instance_id = uuid.uuid4().hex  # tells this process's library notices from others'
        self.library = FaceLibrary(
            config.db_path,
            self.command_backend.model_id,
            self.command_backend.embedding_dim,
            storage_options=config.library_storage.storage_options(),
            on_change=self._library_changed,
        )
        # Enrolments by other instances (or the CLI): periodic refresh, and at once on notice.
        self.library_watcher = LibraryWatcher(
            self.library, config.library_refresh_seconds, on_refreshed=self._on_library_refreshed
        )
        self.mqtt = MqttClient(
            config.mqtt,
            on_command=self._on_command,
            subscriptions={config.mqtt.library_topic: self._on_library_notice},
            on_connected=self._republish,
            reconnect_max_seconds=config.reconnect_max_seconds,
        )
        self.notifier = self._make_notifier()
        self.hub = FrameHub()
        for cam in config.cameras:
            if cam.enabled:  # known before the first frame: a stream opened early waits, no 404
                self.hub.register(cam.name)
        self.web: WebServer | None = None
        self.stream_token: str | None = None
        self.sightings: dict[str, PersonSighting] = {}
        local_clips = config.clips.enabled and config.clips.storage.kind == "local"
        self.alert_history = AlertHistory(local_clips)  # recent alerts for the web page
        self._discovered: dict[str, str] = {}  # person id -> name published in discovery
        self._persons_dirty = threading.Event()
        self.inbox: UnknownInbox | None = None
        self.inbox_feature: InboxFeature | None = None
        if config.inbox.enabled:
            self.inbox = UnknownInbox(config.inbox, self.library, _inbox_path(config))
            self.inbox_feature = InboxFeature(
                self.inbox,
                publish_summary=lambda payload: self._publish(("inbox",), payload, 1, True),
                publish_event=lambda payload: self._publish(("inbox", "event"), payload, 1, False),
                links=self._inbox_links,
            )
        recognizer = FaceRecognizer(self.command_backend, config.defaults, self.library)
        self.commands = CommandHandler(
            LibraryVerbsContext(
                self.library, recognizer, config.media_dir, self.worker, lambda: self.persons_payload()["persons"]
            ),
            respond=lambda request_id, payload: self._publish(("response", request_id), payload, 1, False),
            after_change=lambda _verb: self.publish_persons(),
        )
        self.commands.register(inbox_verbs(self.inbox_feature))
        if config.http.enabled:  # with the face library page (ingress, or the main port with a UI token)
            self.web = self._make_web()
        self.storage: ClipStorage | None = None
        #: Clips being recorded, in the engine's state folder (found again after a crash).
        self.clip_spool = _inbox_path(config).parent / "clip-spool"
        if config.clips.enabled:
            signer = self.web.sign_clip_url if self.web is not None else None
            self.storage = create_storage(config.clips.storage, url_signer=signer)
        self.workers = [
            CameraWorker(
                cam,
                self.library,
                self._publish,
                self._on_alert,
                self._on_sighting,
                self.stop_event,
                config.reconnect_max_seconds,
                hub=self.hub if self.web is not None else None,
                recorder=self._make_recorder(cam.name),
                urls=self.camera_urls,
                clip_url=self._clip_url if self.storage is not None else None,
                on_unknown_ended=self.inbox_feature.on_unknown_ended if self.inbox_feature is not None else None,
                ignored=self.inbox.ignored_group if self.inbox is not None else None,
                source_timeout=config.source_timeout_seconds,
            )
            for cam in config.cameras
            if cam.enabled
        ]

    def _make_web(self) -> WebServer:
        h = self.config.http
        secret, token = secret_and_stream_token(h.secret_file, self.config.db_path, h.stream_token)
        self.stream_token = token
        storage = self.config.clips.storage
        clip_root = Path(storage.path) if self.config.clips.enabled and storage.kind == "local" else None
        limits = HttpLimits(
            h.header_timeout_seconds, h.keepalive_timeout_seconds, h.body_timeout_seconds, h.max_connections
        )
        signer = UrlSigner(secret)
        ui = WebUi(
            library=self.library,
            call=self.commands.call,
            cameras=lambda: [CameraStatus(w.camera.name, w.state, w.fps, w.faces, w.error) for w in self.workers],
            sightings=self.sightings.get,
            alerts=self.alert_history,
            clip_url=ClipLinks(clip_root.resolve() if clip_root is not None else None, signer),
            inbox=self.inbox is not None,
            upload_root=local_state_dir(self.config.db_path) / "uploads",
            ingress_allow=h.ingress_allow,
            ui_token=h.ui_token,
        )
        routes = [InboxCropRoute(signer, self.inbox.crop_jpeg)] if self.inbox is not None else []
        return WebServer(
            h.host, h.port, self.hub, signer, clip_root, h.base_url, stream_token=token,
            ingress_port=h.ingress_port, ingress_host=h.ingress_host, limits=limits, ui=ui, routes=routes,
        )  # fmt: skip

    def _make_recorder(self, camera: str) -> ClipRecorder | None:
        if self.storage is None:
            return None
        c = self.config.clips
        return ClipRecorder(
            camera, self.storage, c.clip_duration, c.pre_roll, on_stored=self._on_clip_stored, spool_dir=self.clip_spool
        )

    def _recover_clips(self, wait_s: float, announce: bool = True) -> list[StoredClip]:
        """Finish or remove the clips a killed engine left in the spool; announce the stored ones
        (``clip`` topic) unless ``announce`` is false. Never raises."""
        assert self.storage is not None
        try:
            stored = recover_clips(self.clip_spool, self.storage, wait_s=wait_s).stored
        except Exception:
            _LOG.exception("clip recovery failed")
            return []
        if announce:
            self._announce_clips(stored)
        return stored

    def _announce_clips(self, clips: list[StoredClip]) -> None:
        for clip in clips:
            try:
                self._on_clip_stored(clip)
            except Exception:
                _LOG.exception("announcing clip %s failed", clip.clip_id)

    def _clip_url(self, key: str) -> str | None:
        assert self.storage is not None
        return self.storage.url(key)

    def camera_urls(self, camera: str) -> dict[str, str | None]:
        """Snapshot, MJPEG and stream (RTSP if configured) URLs of a camera for its state."""
        if self.web is None or not self.web.running:
            return {}
        q = f"?token={self.stream_token}" if self.stream_token else ""
        base = f"{self.web.origin}/api/cameras/{camera}"
        rtsp = self.config.rtsp.base_url
        mjpeg = f"{base}/stream.mjpeg{q}"
        return {
            "snapshot_url": f"{base}/snapshot.jpg{q}",
            "mjpeg_url": mjpeg,
            "stream_url": f"{rtsp.rstrip('/')}/{camera}" if rtsp else mjpeg,
        }

    def _on_clip_stored(self, clip: StoredClip) -> None:
        assert self.storage is not None
        urls = {kind: self.storage.url(key) for kind, key in clip.keys.items()}
        self._publish((clip.camera, "clip"), clip_payload(clip, urls), 1, False)

    def _make_notifier(self) -> Any:
        if not self.config.notifications.urls:
            return None
        from facetrack.notify import NotificationConfig, Notifier

        n = self.config.notifications
        return Notifier(
            NotificationConfig(urls=n.urls, message=n.message, title=n.title, timeout_seconds=n.timeout_seconds)
        )

    # ---- publishing --------------------------------------------------------------------------

    def _publish(self, parts: tuple[str, ...], payload: dict[str, Any], qos: int, retain: bool) -> None:
        self.mqtt.publish_json(self.mqtt.topic(*parts), payload, qos=qos, retain=retain)

    def info_payload(self) -> dict[str, Any]:
        """``<prefix>/info`` (retained)."""
        return {
            "contract_version": CONTRACT_VERSION,
            "version": __version__,
            "backend": self.config.defaults.backend,
            "model_id": self.library.model_id,
            "topic_prefix": self.config.mqtt.topic_prefix,
            "cameras": [w.camera.name for w in self.workers],
            "started_at": iso(self._started),
            **({"features": ["inbox"]} if self.inbox is not None else {}),
            "mqtt_outbox": self.mqtt.outbox_stats(),  # republished on reconnection: what an outage cost
        }

    def persons_payload(self) -> dict[str, Any]:
        """``<prefix>/persons`` (retained): the face library with last sightings."""
        persons = []
        for p in self.library.persons():
            seen = self.sightings.get(p.person_id)
            persons.append(
                {
                    "person_id": p.person_id,
                    "name": p.name,
                    "embeddings": p.embedding_count,
                    "last_seen": iso(seen.last_seen) if seen else None,
                    "last_camera": seen.last_camera if seen else None,
                }
            )
        return {"persons": persons, "time": iso(time.time())}

    def publish_persons(self) -> None:
        """Republish the retained ``persons`` topic (and the persons' discovery, if enabled)."""
        self._publish(("persons",), self.persons_payload(), 1, True)
        if self.config.mqtt.discovery:
            self._publish_person_discovery()

    def _publish_person_discovery(self) -> None:
        m = self.config.mqtt
        current = {p.person_id: p.name for p in self.library.persons()}
        for pid, name in current.items():
            if self._discovered.get(pid) != name:
                topic = config_topic(m.discovery_prefix, m.topic_prefix, "person", pid)
                self.mqtt.publish_json(topic, person_discovery(m.topic_prefix, pid, name), qos=1, retain=True)
        for pid in set(self._discovered) - set(current):  # forgotten: remove the device
            self.mqtt.clear_retained(config_topic(m.discovery_prefix, m.topic_prefix, "person", pid))
        self._discovered = current

    def _republish(self) -> None:
        """After every (re)connection: retained info, persons and camera states."""
        self._publish(("info",), self.info_payload(), 1, True)
        m = self.config.mqtt
        if m.discovery:
            self._discovered = {}  # the broker may have lost them: publish all again
            for w in self.workers:
                topic = config_topic(m.discovery_prefix, m.topic_prefix, "camera", w.camera.name)
                self.mqtt.publish_json(topic, camera_discovery(m.topic_prefix, w.camera.name), qos=1, retain=True)
        self.publish_persons()
        if self.inbox_feature is not None:
            self.inbox_feature.publish()
        for w in self.workers:
            self._publish((w.camera.name, "state"), w.state_payload(), 1, True)

    # ---- callbacks from workers ------------------------------------------------------------------

    def _on_sighting(self, seen: dict[str, Any]) -> None:
        self._publish(("seen", seen["person_id"]), seen, 0, False)
        self.sightings[seen["person_id"]] = PersonSighting(seen["ts"], seen["camera"])
        self._persons_dirty.set()

    def _on_alert(self, alert: Alert, payload: dict[str, Any], snapshot: bytes | None) -> None:
        _LOG.info("alert %s on %s: %s", alert.mode.value, alert.camera, alert.event.person or "unknown face")
        self.alert_history.add(payload, snapshot)
        if self.notifier is not None:
            ctx = {**payload, "time": payload["time"], "person": alert.event.person}
            self.notifier.send(ctx, snapshot)

    def _library_changed(self, operation: str, version: int) -> None:
        """This instance committed a library change: tell the instances sharing the library."""
        m = self.config.mqtt
        payload = library_payload(m.topic_prefix, self.instance_id, self.config.db_path, operation, version)
        self.mqtt.publish_json(m.library_topic, payload, qos=1, retain=False)

    def _on_library_notice(self, raw: bytes) -> None:
        """A library notice (network thread): another instance's change to our library -> refresh."""
        try:
            notice = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            _LOG.warning("ignoring a library notice that is not JSON")
            return
        if not isinstance(notice, dict) or notice.get("origin") == self.instance_id:
            return
        if notice.get("library") != self.config.db_path:
            return  # another library announced on the same topic: nothing to do
        version = notice.get("version")
        self.library_watcher.notify(version if isinstance(version, int) else None)

    def _on_library_refreshed(self) -> None:
        self._persons_dirty.set()

    # ---- the unknown-face inbox -------------------------------------------------------------------

    def _inbox_links(self) -> tuple[str, UrlSigning] | None:
        """The HTTP server's origin and URL signer while it runs (the inbox's crop URLs)."""
        if self.web is None or not self.web.running:
            return None
        return self.web.origin, self.web.signer

    def _on_command(self, verb: str, payload: bytes) -> None:
        self.commands.submit(verb, payload)

    def worker(self, camera: str) -> CameraWorker | None:
        """The worker of a camera by name."""
        return next((w for w in self.workers if w.camera.name == camera), None)

    # ---- lifecycle --------------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`shutdown`)."""
        self._started = time.time()
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.shutdown())
            signal.signal(signal.SIGINT, lambda *_: self.shutdown())
        recovered: list[StoredClip] = []
        if self.storage is not None:
            cleanup_legacy_temp(w.camera.name for w in self.workers)
            if self.storage.kind == "local":  # before the HTTP server, whose clip URLs then never 404
                recovered = self._recover_clips(RECOVERY_WAIT_S, announce=False)
            else:  # S3 may be slow or down: in the background (retried with retention)
                threading.Thread(
                    target=self._recover_clips, args=(RECOVERY_WAIT_S,), name="clip-recovery", daemon=True
                ).start()
        if self.web is not None:
            self.web.start()
        self.mqtt.start()
        self._announce_clips(recovered)  # their URLs need the HTTP server's address
        self.library_watcher.start()
        self.commands.start()
        for w in self.workers:
            w.start()
        last_purge = time.monotonic()
        while not self.stop_event.wait(1.0):
            if self.storage is not None and time.monotonic() - last_purge > PURGE_INTERVAL:
                last_purge = time.monotonic()
                try:
                    removed = self.storage.purge()
                    if removed:
                        _LOG.info("retention: removed %d clips", len(removed))
                except FaceTrackError as err:
                    _LOG.warning("clip retention failed: %s", err)
                self._recover_clips(0.0)  # clips whose upload failed
            if self._persons_dirty.is_set():
                self._persons_dirty.clear()
                self.publish_persons()
            if self.inbox_feature is not None:
                self.inbox_feature.tick()
        for w in self.workers:
            w.join(timeout=10)
        self.commands.stop()
        if self.inbox_feature is not None:
            self.inbox_feature.tick(stop=True)  # a pending inbox change is saved now
        self.library_watcher.stop()
        if self.notifier is not None:
            self.notifier.close(5.0)
        self.publish_persons()
        self.mqtt.stop()
        if self.web is not None:
            self.web.stop()
        _LOG.info("stopped")

    def shutdown(self) -> None:
        """Ask every thread to stop (returns at once; :meth:`run` returns when done)."""
        self.stop_event.set()


def _inbox_path(config: ServiceConfig) -> Path:
    """``inbox.path``, or ``inbox.npz`` next to the face library (the working directory for a
    library on an object store)."""
    if config.inbox.path:
        return Path(config.inbox.path)
    db = config.db_path
    return (Path.cwd() if "://" in db else Path(db).resolve().parent) / "inbox.npz"
