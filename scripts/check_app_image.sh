#!/usr/bin/env bash
# Builds the FaceTrack app image (addon/Dockerfile) and boots it the way the Supervisor does,
# then checks it from outside as Home Assistant would meet it. Exit 0 when every check holds.
#
#   bash scripts/check_app_image.sh            # build (cached layers reused) and check
#   KEEP=1 bash scripts/check_app_image.sh     # leave the work folder for inspection
#
# Needs root and ../shared (the test clip). Installs Debian's podman, runc, debootstrap and
# mosquitto if missing. Takes about 10 minutes the first time on 2 cores (most of it the
# base system and pip); see the README.
#
# What differs from a real Home Assistant host, and why:
# - HA's base image ghcr.io/home-assistant/base-debian:trixie cannot be pulled here. A stand-in
#   is built the way docker-base's debian/Dockerfile builds it: Debian trixie (debootstrap
#   --variant=minbase), bash, jq, tzdata, curl, ca-certificates, xz-utils, and bashio 0.17.5
#   from ../shared/vendor (its lib/ at /usr/lib/bashio, /usr/bin/bashio linking to it).
#   s6-overlay and tempio are release binaries that cannot be fetched offline: the stand-in has
#   neither, so the app's s6 service script runs under bashio directly (`bashio run`), which is
#   what s6's `with-contenv bashio` shebang does minus the container environment import.
# - addon/Dockerfile is built unchanged with BUILD_FROM set to the stand-in, and with
#   HAILORT_VERSION="" and MEDIAMTX_VERSION="" to skip the two steps that download from GitHub
#   (HailoRT's source, MediaMTX's release): the image has no Hailo runtime and no RTSP server.
# - The Supervisor is a stand-in HTTP API (scripts/app_check/supervisor.py) at the address the
#   Supervisor has on the hassio network (172.30.32.2, host name `supervisor`), serving
#   /services/mqtt, /discovery and /addons/self/info. Mosquitto is real, with a password.
# - This machine's own CA certificates (its egress proxy inspects TLS) are trusted in the stand-in
#   base (update-ca-certificates, PIP_CERT), so that pip in the app build reaches PyPI.
# - Everything runs in a private network namespace (`unshare --net`) with only loopback, where
#   172.30.32.2 is added to lo; the container shares that namespace (--network host).
# - podman, not Docker: `podman build --isolation=chroot`, `podman --runtime runc run`, and a
#   containers.conf with `default_ulimits = []` (crun and the default ulimits fail on this
#   kernel's cgroup setup).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SHARED=${FACETRACK_SHARED:-$ROOT/../shared}
BASHIO_SRC="$SHARED/vendor/bashio-0.17.5"
CLIP="$SHARED/data/facenet_pytorch/examples/video.mp4"
CACHE=${FACETRACK_CHECK_CACHE:-/var/cache/facetrack-app-check}
ROOTFS_IMAGE=localhost/facetrack-check/debian:trixie
BASE_IMAGE=localhost/facetrack-check/base-debian:trixie
APP_IMAGE=localhost/facetrack-check/app:latest
CONTAINER=facetrack-app-check
PREFIX=facetrack
CAMERA=street

log() { echo "check_app_image: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

# --- inside the private network namespace: boot the image and check it -----------------------
if [[ "${1:-}" == "--in-netns" ]]; then
    WORK=$2
    ip link set lo up
    ip addr add 172.30.32.2/32 dev lo
    MQTT_PORT=1883
    MQTT_USER=addons
    MQTT_PASS=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
    pids=()
    cleanup() {
        podman --runtime runc rm -f -t 5 "$CONTAINER" >/dev/null 2>&1 || true
        for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    }
    trap cleanup EXIT

    # Real Mosquitto with a password, as the Mosquitto broker app runs it.
    mosquitto_passwd -b -c "$WORK/mosquitto.passwd" "$MQTT_USER" "$MQTT_PASS"
    user=""; [[ $(id -u) -eq 0 ]] && user="user root"
    printf 'listener %s 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence false\n%s\n' \
        "$MQTT_PORT" "$WORK/mosquitto.passwd" "$user" > "$WORK/mosquitto.conf"
    /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
    pids+=($!)
    : > "$WORK/supervisor-requests.jsonl"
    "$ROOT/.venv/bin/python" "$ROOT/scripts/app_check/supervisor.py" --bind 172.30.32.2 --port 80 \
        --token "$TOKEN" --mqtt-port "$MQTT_PORT" --mqtt-username "$MQTT_USER" --mqtt-password "$MQTT_PASS" \
        --record "$WORK/supervisor-requests.jsonl" --options "$WORK/data/options.json" > "$WORK/supervisor.log" 2>&1 &
    pids+=($!)

    # The Supervisor and the broker are up before any app starts: wait for both to listen.
    for endpoint in 172.30.32.2/80 127.0.0.1/"$MQTT_PORT"; do
        for _ in $(seq 120); do
            (exec 3<>"/dev/tcp/$endpoint") 2>/dev/null && break
            sleep 0.5
        done
        (exec 3<>"/dev/tcp/$endpoint") 2>/dev/null || { log "FAIL nothing listens on $endpoint"; exit 1; }
    done

    # The container as the Supervisor starts it: /data/options.json, the addon_config map at
    # /config, media at /media, the token in SUPERVISOR_TOKEN, `supervisor` resolving to the
    # Supervisor's address; the s6 service script as the process.
    podman --runtime runc run -d --name "$CONTAINER" --network host \
        --add-host supervisor:172.30.32.2 \
        -e SUPERVISOR_TOKEN="$TOKEN" \
        -v "$WORK/data:/data" -v "$WORK/config:/config" -v "$WORK/media:/media" \
        --entrypoint bashio "$APP_IMAGE" /etc/services.d/facetrack/run > /dev/null

    status=0
    "$ROOT/.venv/bin/python" "$ROOT/scripts/app_check/verify.py" --mqtt-port "$MQTT_PORT" \
        --mqtt-username "$MQTT_USER" --mqtt-password "$MQTT_PASS" --prefix "$PREFIX" --camera "$CAMERA" \
        --requests "$WORK/supervisor-requests.jsonl" &
    verify=$!
    # A container that exits early fails the check at once instead of after verify's timeouts.
    while kill -0 "$verify" 2>/dev/null; do
        if ! podman --runtime runc container inspect -f '{{.State.Running}}' "$CONTAINER" | grep -qx true; then
            sleep 2; kill "$verify" 2>/dev/null || true
            log "FAIL the app container exited early"; status=1
            break
        fi
        sleep 2
    done
    wait "$verify" || status=1
    podman --runtime runc logs "$CONTAINER" > "$WORK/app.log" 2>&1 || true
    if ! podman --runtime runc container inspect -f '{{.State.Running}}' "$CONTAINER" | grep -qx true; then
        log "FAIL the app container is not running"; status=1
    fi
    if grep -nE 'ERROR|CRITICAL|Traceback|FATAL' "$WORK/app.log" >&2; then
        log "FAIL the app log has errors (above)"; status=1
    else
        log "ok   the app log has no error ($(wc -l < "$WORK/app.log") lines)"
    fi
    if grep -q "$MQTT_PASS" "$WORK/app.log"; then
        log "FAIL the MQTT password appears in the app log"; status=1
    fi
    podman --runtime runc stop -t 30 "$CONTAINER" > /dev/null
    code=$(podman --runtime runc container inspect -f '{{.State.ExitCode}}' "$CONTAINER")
    if [[ "$code" == 0 ]]; then log "ok   the engine stopped cleanly on SIGTERM"; else log "FAIL exit code $code after SIGTERM"; status=1; fi
    echo "--- app log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/app.log" >&2
    exit "$status"
fi

# --- on the host: tools, the base stand-in, the app image --------------------------------------
[[ $(id -u) -eq 0 ]] || fail "run as root (podman build/run with runc, debootstrap, network namespaces)"
[[ -d "$BASHIO_SRC/lib" && -f "$CLIP" ]] || fail "../shared not found (set FACETRACK_SHARED)"
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || [[ -x /usr/sbin/runc ]] || need+=(runc)
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || need+=(debootstrap)
[[ -x /usr/sbin/mosquitto ]] || need+=(mosquitto)
command -v mosquitto_passwd >/dev/null || need+=(mosquitto)
command -v ip >/dev/null || need+=(iproute2)
if [[ ${#need[@]} -gt 0 ]]; then
    log "installing ${need[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" > /dev/null
fi
bash scripts/setup.sh  # .venv: paho for the checks
started=$(date +%s)

mkdir -p "$CACHE"
export CONTAINERS_CONF="$CACHE/containers.conf"
printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' \
    > "$CONTAINERS_CONF"

if ! podman image exists "$ROOTFS_IMAGE"; then
    log "building the Debian trixie root file system (debootstrap, minbase)"
    rm -rf "$CACHE/rootfs"
    debootstrap --variant=minbase trixie "$CACHE/rootfs" http://deb.debian.org/debian > "$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/debootstrap.log" >&2; fail "debootstrap"; }
    tar -C "$CACHE/rootfs" -c . | podman import - "$ROOTFS_IMAGE" > /dev/null
    rm -rf "$CACHE/rootfs"
fi

if ! podman image exists "$BASE_IMAGE"; then
    log "building the stand-in of ghcr.io/home-assistant/base-debian:trixie"
    ctx="$CACHE/base-context"
    rm -rf "$ctx"; mkdir -p "$ctx"
    cp -r "$BASHIO_SRC/lib" "$ctx/bashio"
    # This machine's own certificate authorities (a TLS-inspecting egress proxy sits between it
    # and PyPI): trusted in the stand-in base so that pip in the app build reaches PyPI.
    mkdir -p "$ctx/ca"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
    cat > "$ctx/Containerfile" <<EOF
FROM $ROOTFS_IMAGE
ENV LANG="C.UTF-8" DEBIAN_FRONTEND="noninteractive" CURL_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
RUN apt-get update && apt-get install -y --no-install-recommends bash jq tzdata curl ca-certificates xz-utils \
    && mkdir -p /usr/share/man/man1 /etc/fix-attrs.d /etc/services.d && rm -rf /var/lib/apt/lists/*
COPY ca /usr/local/share/ca-certificates
RUN update-ca-certificates > /dev/null
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY bashio /usr/lib/bashio
RUN ln -s /usr/lib/bashio/bashio /usr/bin/bashio
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
LABEL io.hass.type="base" io.hass.base.name="debian"
EOF
    podman build --isolation=chroot --format docker -q -t "$BASE_IMAGE" -f "$ctx/Containerfile" "$ctx" > /dev/null
fi

log "building addon/Dockerfile on the stand-in (HailoRT and MediaMTX downloads skipped)"
build_started=$(date +%s)
podman build --isolation=chroot --format docker --layers -t "$APP_IMAGE" \
    --build-arg BUILD_FROM="$BASE_IMAGE" --build-arg BUILD_ARCH="$(dpkg --print-architecture)" \
    --build-arg HAILORT_VERSION= --build-arg MEDIAMTX_VERSION= \
    addon/ > "$CACHE/build.log" 2>&1 || { tail -n 40 "$CACHE/build.log" >&2; fail "podman build"; }
build_seconds=$(( $(date +%s) - build_started ))
size=$(podman image inspect -f '{{.Size}}' "$APP_IMAGE")

WORK=$(mktemp -d /tmp/facetrack-app-check.XXXXXX)
[[ -n "${KEEP:-}" ]] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/data" "$WORK/config" "$WORK/media/facetrack/videos"
cp "$CLIP" "$WORK/media/facetrack/videos/$CAMERA.mp4"
# /data/options.json as the Supervisor writes it: every option of config.yaml with its default,
# then what the user set in the Configuration tab.
"$ROOT/.venv/bin/python" - "$ROOT/addon/config.yaml" "$WORK/data/options.json" "$CAMERA" <<'EOF'
import json, sys, yaml
options = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))["options"]
options["cameras"] = [{"name": sys.argv[3], "source": f"/media/facetrack/videos/{sys.argv[3]}.mp4"}]
options["http_base_url"] = "http://homeassistant.local:8099"
json.dump(options, open(sys.argv[2], "w", encoding="utf-8"), indent=2)
EOF
podman --runtime runc rm -f "$CONTAINER" > /dev/null 2>&1 || true

log "booting the app in a private network namespace"
status=0
unshare --net --fork -- bash "$0" --in-netns "$WORK" || status=$?
total=$(( $(date +%s) - started ))
log "image $APP_IMAGE: $(( size / 1000000 )) MB; build ${build_seconds} s; whole check ${total} s"
[[ -z "${KEEP:-}" ]] || log "work folder kept: $WORK"
[[ $status -eq 0 ]] || fail "the app image check failed"
log "passed"
