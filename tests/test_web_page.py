"""The page, in a real headless Chromium (Debian's ``chromium``, driven by Playwright): upload
the eval film, watch the stages complete, play it with both subtitle tracks, edit a Hindi
line, save, and find the edit in the downloaded SRT and in the re-muxed video. A screenshot
of each step goes to ``test-artifacts/web/``."""

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import srt

from conftest import REPO, clip, job_root, no_hub, wait_for
from cpwhisperx import registry

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")
from web_server import TOKEN, Server, start, stop  # noqa: E402

CHROMIUM = os.environ.get("CPWHISPERX_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="no Chromium: apt-get install chromium")
ARTIFACTS = REPO / "test-artifacts" / "web"
FILM = "media_film_mp4"
EDIT = "संपादित पंक्ति"  # "edited line"


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple["playwright.Page", Server]]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Nothing set up, no Hub: English into Hindi by the [llm] extra's small model.
    server = start(tmp_path / "out", env={**no_hub(), "LLM_MODEL": "", "LLM_BASE_URL": ""})
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox",
                                                                    "--autoplay-policy="
                                                                    "no-user-gesture-required"])
        context = browser.new_context(viewport={"width": 1200, "height": 900},
                                      accept_downloads=True)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield tab, server
        finally:
            browser.close()
            stop(server)
    assert not errors, errors


def until(tab: "playwright.Page", script: str, timeout: float = 30) -> None:
    """Wait for ``script`` to be true in the page, asked from here: Playwright's own waiting
    compiles its predicate with eval, which the page's content policy forbids."""
    wait_for(lambda: tab.evaluate(script), timeout=timeout)


def shot(tab: "playwright.Page", name: str) -> None:
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_upload_watch_play_edit_save(page: tuple["playwright.Page", Server],
                                     tmp_path: Path) -> None:
    tab, server = page
    expect = playwright.expect
    tab.goto(f"{server.url}/?token={TOKEN}")
    assert tab.url == f"{server.url}/"  # the token left the address for a cookie
    shot(tab, "1-empty")

    # Keyboard only: the file is chosen through the input, the rest typed and tabbed.
    tab.set_input_files("#file", str(clip(FILM)))
    tab.select_option("#workflow", "subtitle")
    tab.fill("#targets", "en,hi")
    tab.focus("#targets")
    tab.keyboard.press("Tab")
    expect(tab.locator("form button[type=submit]")).to_be_focused()
    tab.keyboard.press("Enter")
    expect(tab.locator("#job")).to_be_visible()
    expect(tab.locator("#stages li")).to_have_count(len(registry.WORKFLOWS["subtitle"]))
    shot(tab, "2-running")
    expect(tab.locator("#job-state")).to_have_text("done", timeout=900_000)
    expect(tab.locator("#stages li.done")).to_have_count(len(registry.WORKFLOWS["subtitle"]))
    shot(tab, "3-done")

    # The film plays, with both tracks.
    expect(tab.locator("#player")).to_be_visible()
    until(tab, "document.getElementById('video').readyState >= 1")
    assert tab.evaluate("[...document.getElementById('video').textTracks].map(t => t.language)"
                        ) == ["en", "hi"]
    tab.evaluate("document.getElementById('video').muted = true")
    tab.evaluate("document.getElementById('video').play()")
    until(tab, "document.getElementById('video').currentTime > 0.5")
    tab.evaluate("document.getElementById('video').textTracks[1].mode = 'showing'")
    until(tab, "document.getElementById('video').textTracks[1].cues?.length > 0")
    tab.evaluate("document.getElementById('video').pause()")
    shot(tab, "4-playing")
    tab.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than it
    assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(tab, "4-phone")
    tab.set_viewport_size({"width": 1200, "height": 900})

    # Edit the first Hindi line and nudge its start; the rules answer as it is typed.
    tab.select_option("#edit-language", "hi")
    rows = tab.locator("#events tr")
    first_start = float(rows.first.locator("input[data-field=start]").input_value())
    rows.first.locator("textarea").fill(EDIT)
    rows.first.locator("input[data-field=start]").focus()
    tab.keyboard.press("ArrowUp")  # a step (0.05 s) later
    second = rows.nth(1).locator("textarea")
    kept = second.input_value()
    second.fill("बहुत लंबी पंक्ति " * 8)
    expect(tab.locator("#warn-2")).to_contain_text("characters on a line", timeout=10_000)
    shot(tab, "5-warning")
    second.fill(kept)
    expect(tab.locator("#warn-2")).not_to_contain_text("characters on a line", timeout=10_000)

    job_id = tab.locator("#job-title").inner_text().rsplit("(", 1)[1].rstrip(")")
    manifest = job_root(server.out, job_id) / "manifest.json"
    before = len(json.loads(manifest.read_text())["runs"])
    tab.click("#save")
    with server.client() as client:
        wait_for(lambda: len(json.loads(manifest.read_text())["runs"]) > before
                 and client.get(f"/api/jobs/{job_id}").json()["state"] == "done", timeout=300)
    expect(tab.locator("#job-state")).to_have_text("done", timeout=30_000)
    expect(tab.locator("#events tr").first.locator("textarea")).to_have_value(EDIT)
    shot(tab, "6-saved")
    run = json.loads(manifest.read_text())["runs"][-1]["stages"]
    assert run["asr"] == run["translate"] == "reused"  # not the speech, not the translation
    assert run["subtitles"] == run["mux"] == "ran"

    # The edit, downloaded from the page's own link, and in the re-muxed video.
    with tab.expect_download() as download:
        tab.click(f"#outputs a[download='{FILM}.hi.srt']")
    saved = tmp_path / "hi.srt"
    download.value.save_as(saved)
    first = next(srt.parse(saved.read_text(encoding="utf-8")))
    assert first.content == EDIT
    assert abs(first.start.total_seconds() - (first_start + 0.05)) < 0.002
    muxed = job_root(server.out, job_id) / "outputs" / f"{FILM}.subtitled.mp4"
    track = subprocess.run(["ffmpeg", "-v", "error", "-i", str(muxed), "-map", "0:s:1", "-f",
                            "srt", "-"], capture_output=True, text=True, check=True).stdout
    assert EDIT in track
