"""``facetrack serve``: every configured camera over one face library, talking MQTT.

The wiring, read top to bottom: :class:`FaceTrackService` builds the parts (the face library, the
MQTT client and its :class:`~facetrack.comms.publisher.Publisher`, the HTTP server, clip storage,
the unknown-face inbox, the command handler) and one :class:`Camera` per configured camera: a
:class:`~facetrack.camera.runner.CameraRunner` on its own thread with its sinks (live stream, clip
recorder, MQTT reports, alerts, inbox), which reopens a failing source with backoff. It registers
what each part republishes after a reconnection, then starts everything; SIGTERM stops everything
cleanly (tracks are ended and their events flushed, ``status`` goes ``offline``).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from facetrack import __version__
from facetrack.alerting import AlertSink
from facetrack.alerts import Alert
from facetrack.camera.runner import CameraRunner, CameraStatus
from facetrack.commands import CommandHandler, LibraryVerbsContext
from facetrack.comms.camera import CameraReporter
from facetrack.comms.mqtt import CONTRACT_VERSION, MqttClient
from facetrack.comms.payloads import (
    AlertPayload,
    PersonsPayload,
    SeenPayload,
    clip_payload,
    disabled_state_payload,
    info_payload,
    library_payload,
    persons_payload,
)
from facetrack.comms.publisher import Publisher
from facetrack.config.notify import NotificationConfig
from facetrack.config.service import CameraConfig, ServiceConfig, inbox_path, local_state_dir
from facetrack.enrich import EnrichSink, GalleryEnricher
from facetrack.errors import FaceTrackError
from facetrack.images import limit_malloc_arenas, release_memory
from facetrack.inbox import UnknownInbox
from facetrack.inbox.commands import inbox_verbs
from facetrack.inbox.feature import InboxFeature, InboxSink, UrlSigning
from facetrack.inbox.web import InboxCropRoute
from facetrack.inference import backend_from_config
from facetrack.library import FaceLibrary
from facetrack.library.sync import LibraryWatcher
from facetrack.recognizer import FaceRecognizer
from facetrack.record.clips import ClipRecorder, RecorderSink, StoredClip, cleanup_legacy_temp, recover_clips
from facetrack.record.snapshots import AlertSnapshots
from facetrack.record.storage import ClipStorage, create_storage
from facetrack.track.face_tracker import BestCrop
from facetrack.web.api import AlertHistory, ClipLinks, WebUi
from facetrack.web.frames import FrameHub, FrameHubSink
from facetrack.web.limits import HttpLimits
from facetrack.web.server import WebServer
from facetrack.web.signing import UrlSigner, secret_and_stream_token

if TYPE_CHECKING:
    from facetrack.notify import Notifier

_LOG = logging.getLogger(__name__)
#: Seconds between clip retention passes (age and total size).
PURGE_INTERVAL = 600.0
#: Seconds start-up waits for the encoders of a killed engine to finish the clips they were writing.
RECOVERY_WAIT_S = 30.0
#: Seconds between returns of freed heap memory to the OS (``malloc_trim``): decoded frames, JPEG
#: buffers and clip bursts leave free pages in malloc's arenas that RSS would otherwise keep.
TRIM_INTERVAL = 60.0


@dataclass(slots=True)
class PersonSighting:
    """When and where a person was last recognised."""

    last_seen: float
    last_camera: str


class Camera:
    """One camera of the service: its :class:`CameraRunner` (with its sinks) on its own thread.

    Args:
        runner: the camera's runner, sinks attached.
        reporter: its MQTT reporter (also one of the runner's sinks): the retained state.
    """

    def __init__(self, runner: CameraRunner, reporter: CameraReporter) -> None:
        self.runner = runner
        self.reporter = reporter
        self.thread = threading.Thread(target=runner.run_forever, name=f"camera-{runner.name}", daemon=True)

    @property
    def name(self) -> str:
        """The camera's name."""
        return self.runner.name

    @property
    def status(self) -> CameraStatus:
        """What it is doing now (state, error, fps, faces)."""
        return self.runner.status

    def best_crops(self, track_id: int) -> list[BestCrop]:
        """Best crops of a live or recently ended track, best first (any thread)."""
        return self.runner.best_crops(track_id)


class FaceTrackService:
    """The whole engine: MQTT, cameras, commands, notifications.

    Args:
        config: the service configuration.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        limit_malloc_arenas()  # before any camera or encoder thread exists
        self.stop_event = threading.Event()
        self.command_backend = backend_from_config(config.defaults)
        self.instance_id = uuid.uuid4().hex  # tells this process's library notices from others'
        m = config.mqtt
        self.mqtt = MqttClient(
            m,
            on_command=self._on_command,
            subscriptions={m.library_topic: self._on_library_notice},
            on_connected=self._on_connected,
            reconnect_max_seconds=config.reconnect_max_seconds,
        )
        discovery = m.discovery_prefix if m.discovery else None
        self.publisher = Publisher(self.mqtt, m.topic_prefix, m.library_topic, discovery)
        self.inbox: UnknownInbox | None = None
        self.inbox_feature: InboxFeature | None = None  # known before the library's first change notice
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
        self.notifier = self._make_notifier()
        self.hub = FrameHub()
        for cam in config.cameras:
            if cam.enabled:  # known before the first frame: a stream opened early waits, no 404
                self.hub.register(cam.name)
        self.sightings: dict[str, PersonSighting] = {}
        self._persons_dirty = threading.Event()
        local_clips = config.clips.enabled and config.clips.storage.kind == "local"
        #: Each alert's own face snapshot, served at a signed URL as long as that URL is valid.
        self.alert_snapshots = AlertSnapshots(
            inbox_path(config).parent / "alert-snapshots", config.clips.storage.url_expiry_seconds
        )
        self.alert_history = AlertHistory(local_clips, snapshots=self.alert_snapshots)  # recent alerts
        if config.inbox.enabled:
            self.inbox = UnknownInbox(config.inbox, self.library, inbox_path(config))
            self.inbox_feature = InboxFeature(
                self.inbox, self.publisher.inbox, self.publisher.inbox_event, links=self._inbox_links,
                match_threshold=config.defaults.cosine_similarity_threshold,
            )  # fmt: skip
        recognizer = FaceRecognizer(self.command_backend, config.defaults, self.library)
        #: Adds turned faces of confidently known tracks to their person (``gallery.auto_enrich``).
        self.enricher: GalleryEnricher | None = None
        if config.gallery.auto_enrich:
            self.enricher = GalleryEnricher(self.library, config.gallery, recognizer.second)
        self.commands = CommandHandler(
            LibraryVerbsContext(
                self.library,
                recognizer,
                config.media_dir,
                self.camera,
                lambda: self.persons_payload()["persons"],
            ),
            respond=self.publisher.response,
            after_change=lambda _verb: self.publish_persons(),
        )
        self.commands.register(inbox_verbs(self.inbox_feature))
        self.web: WebServer | None = None
        self.stream_token: str | None = None
        if config.http.enabled:  # with the face library page (ingress, or the main port with a UI token)
            self.web = self._make_web()
        self.storage: ClipStorage | None = None
        #: Clips being recorded, in the engine's state folder (found again after a crash).
        self.clip_spool = inbox_path(config).parent / "clip-spool"
        if config.clips.enabled:
            signer = self.web.sign_clip_url if self.web is not None else None
            self.storage = create_storage(config.clips.storage, url_signer=signer)
        self.cameras = [self._make_camera(cam) for cam in config.cameras if cam.enabled]
        # Retained state, republished after every (re)connection, in this order.
        self.publisher.add_retained(self._publish_info)
        self.publisher.add_retained(self._publish_camera_discovery)
        self.publisher.add_retained(self.publish_persons)
        if self.inbox_feature is not None:
            self.publisher.add_retained(self.inbox_feature.publish)
        self.publisher.add_retained(self._publish_camera_states)

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
            cameras=lambda: [c.status for c in self.cameras],
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
            alert_snapshot=self.alert_history.snapshot,
        )  # fmt: skip

    def _make_recorder(self, camera: str) -> ClipRecorder | None:
        if self.storage is None:
            return None
        c = self.config.clips
        return ClipRecorder(
            camera,
            self.storage,
            c.duration_seconds,
            c.pre_roll_seconds,
            on_stored=self._on_clip_stored,
            spool_dir=self.clip_spool,
        )

    def _make_camera(self, cam: CameraConfig) -> Camera:
        """A camera's runner with its sinks, in their order on each frame: the live stream, the
        clip recorder, the MQTT reports, the alerts, the inbox, the gallery enrichment."""
        backend = backend_from_config(cam.tracking, cameras=len(self.config.cameras))
        runner = CameraRunner(
            cam.name, cam.source, backend, self.library, cam.tracking,
            fps_cap=cam.fps, realtime=True, stop=self.stop_event,
            source_timeout=self.config.source_timeout_seconds, reconnect_max_seconds=self.config.reconnect_max_seconds,
        )  # fmt: skip
        reporter = CameraReporter(runner.status, self.publisher, self.camera_urls, self._on_sighting)
        recorder = self._make_recorder(cam.name)
        if self.web is not None:
            runner.sinks.append(FrameHubSink(self.hub, cam.name))
        if recorder is not None:
            runner.sinks.append(RecorderSink(recorder))
        runner.sinks.append(reporter)
        clip_url = self._clip_url if self.storage is not None else None
        ignored = self.inbox.ignored_group if self.inbox is not None else None
        alerts = AlertSink(
            cam.name, cam.alerts, self.publisher, self._on_alert, recorder, clip_url, ignored,
            snapshots=self.alert_snapshots, snapshot_url=self._alert_snapshot_url if self.web is not None else None,
        )  # fmt: skip
        runner.sinks.append(alerts)
        if self.inbox_feature is not None:
            runner.sinks.append(InboxSink(self.inbox_feature, cam.name, runner.backend.detect))
        if self.enricher is not None:
            runner.sinks.append(EnrichSink(self.enricher, cam.name))
        return Camera(runner, reporter)

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

    def _alert_snapshot_url(self, alert_id: str) -> str | None:
        """The signed URL of an alert's snapshot while the HTTP server runs (as long-lived as clip URLs)."""
        if self.web is None or not self.web.running:
            return None
        return self.web.sign_alert_snapshot_url(alert_id, self.config.clips.storage.url_expiry_seconds)

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
        self.publisher.clip(clip.camera, clip_payload(clip, urls))

    def _make_notifier(self) -> Notifier | None:
        if not self.config.notifications.urls:
            return None
        from facetrack.notify import Notifier  # Apprise and its plugins: only when notifications are on

        return Notifier(NotificationConfig.of(self.config.notifications))

    # ---- retained state ------------------------------------------------------------------------

    def _publish_info(self) -> None:
        info = info_payload(
            contract_version=CONTRACT_VERSION,
            version=__version__,
            backend=self.config.defaults.backend,
            model_id=self.library.model_id,
            topic_prefix=self.config.mqtt.topic_prefix,
            cameras=[c.name for c in self.cameras],
            disabled_cameras=[c.name for c in self.config.cameras if not c.enabled],
            started_at=self._started,
            features=["inbox"] if self.inbox is not None else [],
            mqtt_outbox=self.mqtt.outbox_stats(),  # republished on reconnection: what an outage cost
        )
        self.publisher.info(info)

    def persons_payload(self) -> PersonsPayload:
        """``<prefix>/persons`` (retained): the face library with last sightings."""
        return persons_payload(self.library.persons(), self.sightings)

    def publish_persons(self) -> None:
        """Republish the retained ``persons`` topic (and the persons' discovery, if enabled)."""
        persons = self.library.persons()
        self.publisher.persons(persons_payload(persons, self.sightings))
        self.publisher.person_discovery({p.person_id: p.name for p in persons})

    def _publish_camera_discovery(self) -> None:
        for c in self.cameras:
            self.publisher.camera_discovery(c.name)

    def _publish_camera_states(self) -> None:
        for c in self.cameras:
            c.reporter.publish_state()
        for cam in self.config.cameras:
            if not cam.enabled:  # listed in info, never opened: its state says why
                self.publisher.state(cam.name, disabled_state_payload(cam.name))

    def _on_connected(self) -> None:
        self.publisher.republish()

    # ---- callbacks from workers ------------------------------------------------------------------

    def _on_sighting(self, seen: SeenPayload) -> None:
        self.sightings[seen["person_id"]] = PersonSighting(seen["ts"], seen["camera"])
        self._persons_dirty.set()

    def _on_alert(self, alert: Alert, payload: AlertPayload, snapshot: bytes | None) -> None:
        _LOG.info("alert %s on %s: %s", alert.mode.value, alert.camera, alert.event.person or "unknown face")
        self.alert_history.add(payload, snapshot)
        if self.notifier is not None:
            ctx = {**payload, "time": payload["time"], "person": alert.event.person}
            self.notifier.send(ctx, snapshot)

    def _library_changed(self, operation: str, version: int) -> None:
        """This instance committed a library change: tell the instances sharing the library, and
        let the inbox re-match its groups (a person enrolled leaves the inbox)."""
        if self.inbox_feature is not None:
            self.inbox_feature.library_changed()
        m = self.config.mqtt
        self.publisher.library_notice(
            library_payload(m.topic_prefix, self.instance_id, self.config.db_path, operation, version)
        )

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
        if self.inbox_feature is not None:
            self.inbox_feature.library_changed()

    # ---- the unknown-face inbox -------------------------------------------------------------------

    def _inbox_links(self) -> tuple[str, UrlSigning] | None:
        """The HTTP server's origin and URL signer while it runs (the inbox's crop URLs)."""
        if self.web is None or not self.web.running:
            return None
        return self.web.origin, self.web.signer

    def _on_command(self, verb: str, payload: bytes) -> None:
        self.commands.submit(verb, payload)

    def camera(self, camera: str) -> Camera | None:
        """A camera by name."""
        return next((c for c in self.cameras if c.name == camera), None)

    # ---- lifecycle --------------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`shutdown`)."""
        self._started = time.time()
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.shutdown())
            signal.signal(signal.SIGINT, lambda *_: self.shutdown())
        recovered: list[StoredClip] = []
        if self.storage is not None:
            cleanup_legacy_temp(c.name for c in self.cameras)
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
        if self.enricher is not None:
            self.enricher.start()
        self.commands.start()
        for c in self.cameras:
            c.thread.start()
        last_purge = last_trim = time.monotonic()
        while not self.stop_event.wait(1.0):
            if time.monotonic() - last_trim > TRIM_INTERVAL:
                last_trim = time.monotonic()
                release_memory()
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
        for c in self.cameras:
            c.thread.join(timeout=10)
        self.commands.stop()
        if self.enricher is not None:
            self.enricher.stop()
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
