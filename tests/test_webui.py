"""The face library page in a real browser: Debian's Chromium driven by Playwright, against the real
engine (``facetrack serve``) reached through an ingress-like reverse proxy on loopback.

The camera plays the composed demo clip (two enrolled people and a stranger), so the page has real
persons, a real unknown-face group, a live MJPEG stream, alerts and H.264 clips. Enrolment photos
come from ../shared/data. Screenshots go to test-artifacts/screenshots/ (the paths are printed).
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from mqtt_helpers import Broker
from webui_helpers import ARTIFACTS, UI_TOKEN, IngressProxy, WebEngine, seed_demo, wait_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))
import compose  # noqa: E402

pytestmark = pytest.mark.timeout(300)
CHROMIUM = os.environ.get("FACETRACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebEngine, IngressProxy]]:
    """Broker, engine (demo clip, two people enrolled) and the ingress proxy, for the whole module."""
    tmp = tmp_path_factory.mktemp("webui")
    clip, db = seed_demo(tmp)
    broker = Broker(tmp)
    broker.start()
    (tmp / "engine").mkdir()
    engine = WebEngine(tmp / "engine", broker.port, db, clip)
    proxy = None
    try:
        engine.start()
        proxy = IngressProxy(engine.ingress_port).start()
        yield engine, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        code = engine.stop()
        broker.stop()
        assert code == 0, engine.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, stack: tuple[WebEngine, IngressProxy]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    failures: list[str] = []
    pg.on("pageerror", lambda exc: failures.append(f"page error: {exc}"))
    pg.on("console", lambda m: failures.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.failures = failures  # type: ignore[attr-defined]
    yield pg
    context.close()
    # A broken relative URL, a script error or a CSP violation shows up here.
    assert not failures, failures


def shot(pg: Page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


def data_path(rel: str) -> Path:
    path = ROOT.parent / "shared" / "data" / rel
    assert path.is_file(), path
    return path


ANGELINA = [data_path(f"deepface/tests/unit/dataset/img{i}.jpg") for i in (1, 2, 4)]
GROUP_PHOTO = data_path("insightface_wheel/insightface/data/images/t1.jpg")
NO_FACE_PHOTO = data_path("dlib/examples/faces/dogs.jpg")


def person_card(pg: Page, name: str) -> Any:
    return pg.locator(f'a.card.person[data-person="{name}"]')


def test_people_page_works_under_the_ingress_prefix(page: Page, stack: tuple[WebEngine, IngressProxy]) -> None:
    _, proxy = stack
    statuses: list[tuple[int, str]] = []
    page.on("response", lambda r: statuses.append((r.status, r.url)))
    page.goto(proxy.url)
    for name in compose.ENROLLED:
        expect(person_card(page, name)).to_be_visible()
        expect(person_card(page, name)).to_contain_text("3 faces")
    loaded = (
        "() => [...document.querySelectorAll('a.card.person img.pic')].every(i => i.complete && i.naturalWidth > 0)"
    )
    wait_for(lambda: page.evaluate(loaded), 10, what="thumbnails")
    # Everything the page loaded went through the prefix (a root-absolute URL would miss it).
    assert statuses and all(url.startswith(f"http://127.0.0.1:{proxy.port}{proxy.prefix}/") for _, url in statuses)
    assert all(code < 400 for code, _ in statuses), [s for s in statuses if s[0] >= 400]
    assert ("GET", "/api/persons") in proxy.requests
    # Labels: every image has alt text, every form control a label, every button a name.
    problems = page.evaluate(
        """() => {
        const out = [];
        document.querySelectorAll('img').forEach(i => {
          if (!i.hasAttribute('alt')) out.push('img without alt: ' + i.src); });
        document.querySelectorAll('input:not([type=file]), select').forEach(i => {
          if (!(i.labels && i.labels.length) && !i.getAttribute('aria-label')) out.push('unlabelled ' + i.id); });
        document.querySelectorAll('button').forEach(b => {
          if (!(b.getAttribute('aria-label') || b.textContent.trim())) out.push('button without a name'); });
        return out; }"""
    )
    assert problems == []
    shot(page, "people")


def test_enrol_by_upload_and_drop_gives_a_result_per_photo(page: Page, stack: tuple[WebEngine, IngressProxy]) -> None:
    engine, proxy = stack
    page.goto(proxy.url)
    page.get_by_role("button", name="Add person").click()
    dialog = page.locator("#enrol-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill("Angelina Jolie")
    page.set_input_files("#enrol-files", [str(p) for p in (*ANGELINA[:2], GROUP_PHOTO, NO_FACE_PHOTO)])
    # The third photo arrives by drag and drop, as a file dragged from the desktop would.
    b64 = base64.b64encode(ANGELINA[2].read_bytes()).decode()
    transfer = page.evaluate_handle(
        """b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
           const dt = new DataTransfer();
           dt.items.add(new File([bytes], 'dropped.jpg', {type: 'image/jpeg'})); return dt; }""",
        b64,
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    files = dialog.locator("#enrol-files-list li")
    expect(files).to_have_count(5)
    page.get_by_role("button", name="Enrol", exact=True).click()
    status = dialog.locator("#enrol-files-list .status")
    expect(status).to_have_count(5, timeout=60_000)
    results = dict(
        zip(files.evaluate_all("els => els.map(e => e.dataset.file)"), status.all_inner_texts(), strict=True)
    )
    assert results == {
        ANGELINA[0].name: "Enrolled",
        ANGELINA[1].name: "Enrolled",
        GROUP_PHOTO.name: "Several faces",
        NO_FACE_PHOTO.name: "No face found",
        "dropped.jpg": "Enrolled",
    }
    shot(page, "enrol-results", full_page=False)
    page.keyboard.press("Escape")
    expect(person_card(page, "Angelina Jolie")).to_contain_text("3 faces")
    person = next(p for p in engine.get_json("api/persons")["persons"] if p["name"] == "Angelina Jolie")
    assert person["embeddings"] == 3


def test_remove_a_wrong_embedding(page: Page, stack: tuple[WebEngine, IngressProxy]) -> None:
    engine, proxy = stack
    page.goto(proxy.url)
    person_card(page, "Angelina Jolie").click()
    faces = page.locator("li.face")
    expect(faces).to_have_count(3)
    wait_for(
        lambda: page.evaluate(
            "() => [...document.querySelectorAll('li.face img')].every(i => i.complete && i.naturalWidth === 112)"
        ),
        10,
        what="face crops",
    )
    shot(page, "person")
    removed = faces.nth(2).get_attribute("data-embedding")
    page.get_by_role("button", name="Remove face 3").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.locator("#confirm-ok").click()
    expect(faces).to_have_count(2)
    assert removed not in faces.evaluate_all("els => els.map(e => e.dataset.embedding)")
    detail = engine.get_json(f"api/persons/{page.url.rsplit('/', 1)[1]}")
    assert detail["embeddings"] == 2 and removed not in [e["embedding_id"] for e in detail["embedding_list"]]


def test_name_an_unknown_group(page: Page, stack: tuple[WebEngine, IngressProxy]) -> None:
    engine, proxy = stack
    # The stranger of the demo clip forms a group once their track has ended as unknown.
    wait_for(
        lambda: [g for g in engine.get_json("api/inbox")["groups"] if g["status"] == "pending"],
        90,
        1.0,
        "an inbox group",
    )
    page.goto(proxy.url + "#inbox")
    group = page.locator("li.group").first
    expect(group).to_be_visible()
    expect(page.locator("#inbox-count")).to_be_visible()
    wait_for(
        lambda: group.locator("img").first.evaluate("i => i.complete && i.naturalWidth > 0"), 10, what="group crop"
    )
    shot(page, "inbox")
    gid = group.get_attribute("data-group")
    group.get_by_role("button", name="Name").click()
    page.locator("#text-input").fill("John Simm")
    page.locator("#text-submit").click()
    expect(page.locator(f'li.group[data-group="{gid}"]')).to_have_count(0)
    assert "John Simm" in [p["name"] for p in engine.get_json("api/persons")["persons"]]
    page.get_by_role("link", name="People").click()
    expect(person_card(page, "John Simm")).to_be_visible()


def test_camera_tile_opens_a_live_stream(page: Page, stack: tuple[WebEngine, IngressProxy]) -> None:
    _, proxy = stack
    page.goto(proxy.url + "#cameras")
    tile = page.locator('li.cam[data-camera="door"]')
    expect(tile).to_contain_text("frames/s")
    shot(page, "cameras")
    tile.get_by_role("button", name="Watch door live").click()
    live = page.locator("#live-stream")
    expect(live).to_be_visible()
    # MJPEG frames keep arriving: the picture's pixels change (people walk through the clip).
    digest = """i => { if (!i.complete || !i.naturalWidth) return null; const c = document.createElement('canvas');
        c.width = 160; c.height = 90; const g = c.getContext('2d'); g.drawImage(i, 0, 0, 160, 90);
        const d = g.getImageData(0, 0, 160, 90).data; let h = 0;
        for (let k = 0; k < d.length; k += 7) h = (h * 31 + d[k]) | 0; return h; }"""
    first = wait_for(lambda: live.evaluate(digest), 20, 0.2, "a first MJPEG frame")
    wait_for(lambda: live.evaluate(digest) not in (None, first), 20, 0.2, "a second, different frame")
    assert live.evaluate("i => i.naturalWidth") == 1280
    shot(page, "camera-live", full_page=False)
    page.keyboard.press("Escape")
    expect(live).to_have_count(0)


def test_alert_clip_plays(page: Page, stack: tuple[WebEngine, IngressProxy]) -> None:
    engine, proxy = stack
    wait_for(lambda: [a for a in engine.get_json("api/alerts")["alerts"] if a["clip_url"]], 90, 1.0, "an alert clip")
    page.goto(proxy.url + "#alerts")
    play = page.locator("li.alert button.play").first
    expect(play).to_be_visible()
    shot(page, "alerts")
    play.click()
    video = page.locator("#clip-player")
    expect(video).to_be_visible()
    wait_for(lambda: video.evaluate("v => v.readyState >= 2 && v.currentTime > 0.2"), 20, 0.2, "the clip to play")
    assert video.evaluate("v => v.videoWidth") > 0
    shot(page, "alert-clip", full_page=False)


def test_phone_layout(browser: Browser, stack: tuple[WebEngine, IngressProxy]) -> None:
    _, proxy = stack
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    pg = context.new_page()
    try:
        for view, name in (("", "phone-people"), ("#alerts", "phone-alerts"), ("#inbox", "phone-inbox")):
            pg.goto(proxy.url + view)
            expect(pg.locator("main h2")).to_be_visible()
            pg.wait_for_load_state("networkidle")
            # Nothing wider than the screen: no sideways scrolling.
            assert pg.evaluate("() => document.documentElement.scrollWidth") <= 390
            shot(pg, name)
        pg.goto(proxy.url)
        person_card(pg, "John_Salley").click()
        expect(pg.locator("li.face")).to_have_count(3)
        assert pg.evaluate("() => document.documentElement.scrollWidth") <= 390
        shot(pg, "phone-person")
    finally:
        context.close()


def _contrast(pg: Page, selector: str) -> float:
    return float(
        pg.evaluate(
            """sel => { const el = document.querySelector(sel);
            const rgb = s => s.match(/[0-9.]+/g).slice(0, 3).map(Number);
            const lum = c => { const [r, g, b] = c.map(v => {
              v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
              return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
            let bgEl = el, bg = 'rgba(0, 0, 0, 0)';
            while (bgEl && (bg = getComputedStyle(bgEl).backgroundColor).endsWith(', 0)')) bgEl = bgEl.parentElement;
            const a = lum(rgb(getComputedStyle(el).color)), b = lum(rgb(bg));
            return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); }""",
            selector,
        )
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_colours_follow_the_system_and_keep_contrast(
    browser: Browser, stack: tuple[WebEngine, IngressProxy], scheme: str
) -> None:
    _, proxy = stack
    context = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme=scheme)  # type: ignore[arg-type]
    pg = context.new_page()
    try:
        pg.goto(proxy.url)
        expect(person_card(pg, "John_Salley")).to_be_visible()
        background = pg.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(17, 17, 17)") == (scheme == "dark")
        for sel in (
            "body",
            ".card .title",
            ".card .meta",
            'nav a[aria-current="page"]',
            "nav a:not([aria-current])",
            "button.primary",
        ):
            assert _contrast(pg, sel) >= 4.5, (scheme, sel, _contrast(pg, sel))
        shot(pg, f"people-{scheme}")
    finally:
        context.close()


def test_keyboard_only(page: Page, stack: tuple[WebEngine, IngressProxy]) -> None:
    _, proxy = stack
    page.goto(proxy.url)
    expect(person_card(page, "John_Salley")).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.textContent.trim().split(' ')[0]"))
    assert order == ["People", "Inbox", "Cameras", "Alerts"]
    # The focused element shows a visible outline.
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert outline[0] != "none" and outline[1] >= 2
    # Tab on to the first person card; the periodic refresh rebuilds the view and keeps the focus.
    page.keyboard.press("Tab")  # the view's "Add person"
    page.keyboard.press("Tab")
    card = page.evaluate("() => document.activeElement.dataset.person")
    assert card in ("Angelina Jolie", "John Simm", *compose.ENROLLED)
    page.evaluate("() => route()")
    page.wait_for_function("name => document.activeElement.dataset.person === name", arg=card)
    assert page.evaluate("() => document.activeElement.isConnected")  # the new card, not a removed one
    for _ in range(3):
        page.keyboard.press("Shift+Tab")  # back to "Cameras"
    page.keyboard.press("Enter")
    expect(page.locator("main h2")).to_have_text("Cameras")
    assert page.evaluate("() => document.activeElement.tagName") == "H2"  # focus moves to the new view
    # A dialog opens and closes from the keyboard, and focus goes back to the page.
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#media-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#media-dialog")).to_be_hidden()


def test_direct_port_needs_the_ui_token(browser: Browser, stack: tuple[WebEngine, IngressProxy]) -> None:
    engine, _ = stack
    context = browser.new_context()
    pg = context.new_page()
    try:
        response = pg.goto(engine.direct + "/")
        assert response is not None and response.status == 401
        assert "People" not in pg.content()
        response = pg.goto(engine.direct + f"/?token={UI_TOKEN}")  # sets the cookie, then redirects to ./
        assert response is not None and response.status == 200 and pg.url == engine.direct + "/"
        expect(person_card(pg, "John_Salley")).to_be_visible()
        cookie = next(c for c in context.cookies() if c["name"] == "facetrack_ui")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    finally:
        context.close()
