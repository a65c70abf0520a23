"""The repository as HACS, the Supervisor's app store and a new user read it: one canonical URL
everywhere, no placeholders left, the licence GitHub must recognise, ``hacs.json`` keys that HACS
2.x reads, one minimum Home Assistant version, and docs that agree with the code.

Sources of the rules: HACS 2.x ``custom_components/hacs/utils/validate.py`` (``HACS_MANIFEST_JSON_SCHEMA``,
``INTEGRATION_MANIFEST_JSON_SCHEMA``) and ``validate/brands.py`` (local ``brand/icon.png``), and
``repositories/base.py``, where ``render_readme`` is declared but no longer read (HACS commit
883e0ce9, May 2024: the README is always shown)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cv2
import pytest
import yaml

import facetrack
from facetrack.comms.discovery import ORIGIN

ROOT = Path(__file__).resolve().parents[1]
COMPONENT = ROOT / "custom_components" / "facetrack"
ADDON = ROOT / "addon"

#: Keys of HACS 2.x's hacs.json schema that HACS still reads (``render_readme`` is accepted by the
#: schema but ignored since HACS 2.0).
HACS_JSON_KEYS = {
    "name", "content_in_root", "country", "filename", "hacs", "hide_default_branch", "homeassistant",
    "persistent_directory", "zip_release",
}  # fmt: skip
#: Required keys of HACS's INTEGRATION_MANIFEST_JSON_SCHEMA.
HACS_MANIFEST_KEYS = {"codeowners", "documentation", "domain", "issue_tracker", "name", "version"}
#: SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt (also Debian's
#: /usr/share/common-licenses/Apache-2.0): the unmodified text is what GitHub's licence detection
#: (and with it HACS's licence check) recognises as Apache-2.0.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"

# Leftovers the repository must not contain. Hostnames under the reserved ``.example`` TLD
# (RFC 2606) are fine in test fixtures (tests/, tests_ha/); an e-mail address there is not.
PLACEHOLDER = re.compile(r"\bOWNER\b")
LATER_VERSION = re.compile(r"later\s+version", re.IGNORECASE)
EXAMPLE_EMAIL = re.compile(r"[\w.+-]+@(?:[\w-]+\.)+example\b(?!\.)", re.IGNORECASE)
EXAMPLE_HOST = re.compile(r"\b[\w-]+(?:\.[\w-]+)*\.example\b(?!\.)", re.IGNORECASE)
FIXTURE_DIRS = ("tests/", "tests_ha/")
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project_url() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    url: str = pyproject["project"]["urls"]["Homepage"]
    assert pyproject["project"]["urls"]["Issues"] == f"{url}/issues"
    return url


def _repository_files() -> list[str]:
    """Tracked files plus new, not ignored ones (what the next commit would hold)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return sorted({p for p in out.decode().split("\0") if p and (ROOT / p).is_file()})


def _text(path: str) -> str | None:
    data = (ROOT / path).read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary (images, models)
    return data.decode("utf-8", errors="replace")


# --- one canonical URL -------------------------------------------------------------------------


def test_one_repository_url_everywhere(project_url: str) -> None:
    parsed = urlparse(project_url)
    assert parsed.scheme == "https" and parsed.netloc == "github.com", project_url
    owner, repo = parsed.path.strip("/").split("/")
    assert project_url == facetrack.PROJECT_URL
    assert ORIGIN["url"] == project_url
    assert _yaml(ROOT / "repository.yaml")["url"] == project_url
    assert _yaml(ADDON / "config.yaml")["url"].startswith(f"{project_url}/")
    manifest = _json(COMPONENT / "manifest.json")
    assert manifest["documentation"].startswith(project_url)
    assert manifest["issue_tracker"] == f"{project_url}/issues"
    assert manifest["codeowners"] == [f"@{owner}"]
    # Every GitHub link to this project, in any file, is the canonical one.
    link = re.compile(rf"github\.com/([\w.-]+)/{re.escape(repo)}\b")
    for path in _repository_files():
        text = _text(path) if path != SELF else None  # this file quotes the old placeholder
        for m in link.finditer(text or ""):
            assert m.group(1) == owner, f"{path}: {m.group(0)}"


def test_repository_yaml_maintainer_is_reachable(project_url: str) -> None:
    maintainer = _yaml(ROOT / "repository.yaml")["maintainer"]
    assert project_url in maintainer, maintainer


def test_no_placeholders_left() -> None:
    files = _repository_files()
    assert "README.md" in files and "custom_components/facetrack/manifest.json" in files
    problems = []
    for path in files:
        if path == SELF:
            continue  # the patterns themselves
        text = _text(path)
        if text is None:
            continue
        for name, pattern in (
            ("OWNER", PLACEHOLDER),
            ("later version", LATER_VERSION),
            (".example e-mail", EXAMPLE_EMAIL),
        ):
            problems += [f"{path}: {name}: {m.group(0)!r}" for m in pattern.finditer(text)]
        if not path.startswith(FIXTURE_DIRS):
            problems += [f"{path}: .example host: {m.group(0)!r}" for m in EXAMPLE_HOST.finditer(text)]
    assert not problems, "\n".join(problems)


def test_placeholder_patterns_catch_what_they_should() -> None:
    # The patterns above are what keeps the leftovers out; check they match the original offenders.
    assert PLACEHOLDER.search("https://github.com/OWNER/facetrack")
    assert not PLACEHOLDER.search('"codeowners": ["@facetrack-ha"]')
    assert LATER_VERSION.search("will offer these actions in a\nlater version")
    assert EXAMPLE_EMAIL.search("<maintainers@users.noreply.b-seed-02758b3c.example>")
    assert EXAMPLE_HOST.search("https://ha.example/ft/")
    assert not EXAMPLE_EMAIL.search("mailtos://user:password@example.com")
    assert not EXAMPLE_HOST.search("https://photos.example.com/anna.jpg")


# --- licence and HACS --------------------------------------------------------------------------


def test_license_is_the_apache_2_text_pyproject_names() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_SHA256


def test_hacs_json_has_only_keys_hacs_2_reads() -> None:
    hacs = _json(ROOT / "hacs.json")
    assert set(hacs) <= HACS_JSON_KEYS, set(hacs) - HACS_JSON_KEYS
    assert isinstance(hacs["name"], str) and hacs["name"]
    assert re.fullmatch(r"\d{4}\.\d{1,2}\.\d+", hacs["homeassistant"]), hacs["homeassistant"]
    # One integration, in custom_components/<domain>/ (content_in_root is false).
    assert not hacs.get("content_in_root", False)
    dirs = [p.name for p in (ROOT / "custom_components").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert dirs == ["facetrack"]


def test_manifest_has_what_hacs_requires() -> None:
    manifest = _json(COMPONENT / "manifest.json")
    assert set(manifest) >= HACS_MANIFEST_KEYS, HACS_MANIFEST_KEYS - set(manifest)
    assert manifest["domain"] == COMPONENT.name
    assert isinstance(manifest["codeowners"], list) and manifest["codeowners"]
    for key in ("documentation", "issue_tracker"):
        assert urlparse(manifest[key]).scheme == "https", key


def test_brand_icon_where_hacs_and_home_assistant_look() -> None:
    # HACS's brands check: <content path>/brand/icon.png; HA 2026.3+: the integration's brand/ folder
    # (icon.png 256x256, https://developers.home-assistant.io/docs/core/integration/brand_images).
    path = COMPONENT / "brand" / "icon.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None and (img.shape[1], img.shape[0]) == (256, 256)
    readme = (COMPONENT / "README.md").read_text(encoding="utf-8")
    assert "2026.3" in readme and "placeholder" in readme  # what older versions show


# --- minimum Home Assistant version and menu paths ---------------------------------------------


def test_minimum_home_assistant_version_is_stated_once_and_agrees() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = re.findall(r"Requires Home Assistant (\d{4}\.\d{1,2}\.\d+) or newer", readme)
    assert len(stated) == 1, stated
    assert stated[0] == _json(ROOT / "hacs.json")["homeassistant"]
    assert _yaml(ADDON / "config.yaml")["homeassistant"] == stated[0]
    # The HA test environment is at least that version.
    pinned = re.search(r"^homeassistant==(\S+)$", (ROOT / "tests_ha" / "requirements.txt").read_text(), re.M)
    assert pinned is not None
    as_tuple = [tuple(int(x) for x in v.split(".")) for v in (pinned.group(1), stated[0])]
    assert as_tuple[0] >= as_tuple[1]


@pytest.mark.parametrize("doc", ["README.md", "addon/DOCS.md"])
def test_menu_paths_for_2025_and_2026(doc: str) -> None:
    text = " ".join((ROOT / doc).read_text(encoding="utf-8").split())
    assert "Settings → Add-ons → Add-on Store" in text.replace("**", ""), doc
    assert "Settings → Apps" in text.replace("**", ""), doc
    assert "Repositories" in text


# --- docs agree with the code ------------------------------------------------------------------


def test_docs_name_the_integrations_actions_and_hacs() -> None:
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    services = _yaml(COMPONENT / "services.yaml")
    for name in services:
        assert f"`facetrack.{name}`" in docs, name
    assert "HACS" in docs
    config = _yaml(ADDON / "config.yaml")
    assert config["options"]["discovery"] is False  # hence: no entities without the integration
    assert "Without the integration no entities appear" in " ".join(docs.split())


def test_docs_example_options_are_valid_and_include_http_base_url() -> None:
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    example = re.search(r"## Configuration\n\nExample:\n\n```yaml\n(.*?)```", docs, re.S)
    assert example is not None
    options = yaml.safe_load(example.group(1))
    schema = _yaml(ADDON / "config.yaml")["schema"]
    assert set(options) <= set(schema), set(options) - set(schema)
    assert urlparse(options["http_base_url"]).scheme in ("http", "https")


def test_hailo_is_marked_experimental() -> None:
    conf = _yaml(ADDON / "translations" / "en.yaml")["configuration"]
    assert "experimental" in conf["backend"]["description"]
    assert "(experimental)" in conf["degirum_device"]["name"]
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    hailo = docs.split("## Hailo accelerator", 1)[1].split("\n## ", 1)[0]
    assert "**Experimental.**" in hailo
    assert "experimental" in (ADDON / "README.md").read_text(encoding="utf-8")


def test_hailo_docs_name_the_decoder_families_the_engine_has() -> None:
    from facetrack.inference import degirum

    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    hailo = docs.split("## Hailo accelerator", 1)[1].split("\n## ", 1)[0]
    families = {s.family for pair in degirum.PRESETS.values() for s in pair}
    assert families == {"yunet", "yolov8_kpts", "sface", "arcface"}
    for family in families:
        assert f"`{family}`" in hailo, family
    # The preset model names the local zoo's sub-folders must carry.
    assert degirum.HAILO_DETECTOR.format(chip="hailo8l") in hailo
    assert degirum.HAILO_EMBEDDER.format(chip="hailo8l") in hailo
    # The local-zoo model JSON shown is valid JSON with a HEF and no Python postprocessor.
    block = re.search(r"```json\n(.*?)```", hailo, re.S)
    assert block is not None
    model = json.loads(block.group(1))
    assert model["MODEL_PARAMETERS"][0]["ModelPath"].endswith(".hef")
    assert "PythonFile" not in model["POST_PROCESS"][0]
    assert model["DEVICE"][0]["RuntimeAgent"] == "HAILORT"
