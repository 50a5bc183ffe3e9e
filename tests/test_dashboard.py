"""The operator dashboard in a real headless Chromium (Debian's, driven by Playwright) against a
real service with a simulated video camera. Screenshots go to FABRICAD_TEST_ARTIFACTS
(default: test-artifacts/ in the repository)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fabricad.data.alignment import shear
from fabricad.data.synthetic import FABRICS, PlacedDefect, render_fabric, render_roll
from tests.browser import ARTIFACTS, browser_missing, browser_page
from tests.live_server import ADMIN, Server

httpx = pytest.importorskip("httpx")
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


def _video(path: Path, frames: int = 16) -> Path:
    """A video camera's file: normal fabric with a hole in every eighth frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 4, (128, 128))
    rng = np.random.default_rng(3)
    for i in range(frames):
        if i % 8 == 7:
            image, _ = render_roll("plain", 128, 128, [PlacedDefect("hole", 44, 44, 36, 36)], seed=i)
        else:
            image = render_fabric(FABRICS["plain"], 128, 128, rng)
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    assert path.stat().st_size > 0
    return path


@pytest.fixture()
def live(trained_models, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    _video(media / "loom7.avi")
    server = Server(trained_models, tmp_path, FABRICAD_MEDIA_DIR=str(media), FABRICAD_REPORT_DIR=str(tmp_path / "reports"))
    added = httpx.post(f"{server.url}/v1/cameras", json={"id": "loom7", "source": "media:loom7.avi", "fps": 4},
                       headers={"X-API-Key": ADMIN})
    assert added.status_code == 201, added.text
    yield server
    server.stop()


@pytest.fixture()
def page():
    with browser_page() as page:
        yield page


def test_dashboard_live_defects_ack_threshold_and_rolls(live, page):
    url, expect = live.url, sync_api.expect
    page.goto(url)
    expect(page.get_by_test_id("role")).to_contain_text("read-only")
    page.fill("#key", "wrong-key")
    page.click("#signin")
    expect(page.locator("#banner")).to_contain_text("unknown API key")
    page.fill("#key", ADMIN)
    page.click("#signin")
    expect(page.get_by_test_id("role")).to_have_text("signed in: admin (API key)")

    # live: the frame and its counter keep changing
    sequence = page.locator('[data-camera="loom7"] [data-testid="sequence"]')
    expect(sequence).to_have_text(re.compile(r"\d+"), timeout=30_000)
    first = int(sequence.inner_text())
    page.wait_for_function(f"() => Number(document.querySelector('[data-camera=loom7] [data-testid=sequence]').textContent) > {first + 2}",
                           timeout=30_000)
    page.wait_for_function("() => document.querySelector('[data-camera=loom7] img').naturalWidth === 128", timeout=10_000)
    expect(page.locator('[data-camera="loom7"] .lamp')).to_have_text(re.compile("OK|DEFECT"))
    page.screenshot(path=ARTIFACTS / "dashboard-live.png")

    # a defective frame puts a defect in the log (the badge counts it), and the table shows it
    page.click('#tabs button[data-tab="defects"]')
    rows = page.locator("#defect-table tbody tr")
    expect(rows.first).to_be_visible(timeout=30_000)
    expect(page.locator("#unacked")).to_be_visible()
    rows.first.click()
    defect_id = int(rows.first.get_attribute("data-id"))
    expect(page.locator("#defect-detail img")).to_be_visible()
    page.keyboard.press("f")  # false alarm, by keyboard
    detail = httpx.get(f"{url}/v1/defects/{defect_id}").json()
    for _ in range(50):
        if detail["acknowledged"]:
            break
        time.sleep(0.1)
        detail = httpx.get(f"{url}/v1/defects/{defect_id}").json()
    assert detail["acknowledged"] and detail["label"] == "false_alarm" and detail["acknowledged_by"].startswith("key:")
    page.screenshot(path=ARTIFACTS / "dashboard-defects.png")
    page.reload()  # persisted: the label is there after a reload
    page.click('#tabs button[data-tab="defects"]')
    expect(page.locator(f'#defect-table tr[data-id="{defect_id}"] [data-testid="label"]')).to_have_text("false_alarm")
    zipped = httpx.get(f"{url}/v1/defects/export.zip", headers={"X-API-Key": ADMIN})
    assert zipped.status_code == 200 and int(zipped.headers["X-Image-Count"]) == 1

    # the threshold slider previews the false-alarm rate, and the new threshold takes effect
    page.click('#tabs button[data-tab="models"]')
    slider = page.locator('[data-model="plain"] input[type=range]')
    expect(slider).to_be_enabled()
    slider.evaluate("s => { s.value = s.max; s.dispatchEvent(new Event('input')); }")
    expect(page.locator('[data-model="plain"] [data-testid="preview-far"]')).to_have_text("0.0 %")
    chosen = float(slider.input_value())
    page.click('[data-model="plain"] >> text=Apply threshold')
    expect(page.locator('[data-model="plain"] [data-testid="threshold"]')).to_have_text(f"{chosen:.4f}")
    assert httpx.get(f"{url}/v1/models/plain/threshold").json()["value"] == pytest.approx(chosen)
    page.screenshot(path=ARTIFACTS / "dashboard-models.png")
    page.click('#tabs button[data-tab="live"]')
    seen = int(httpx.get(f"{url}/v1/cameras/loom7").json()["frames_processed"])
    deadline = time.time() + 30
    while httpx.get(f"{url}/v1/cameras/loom7").json()["frames_processed"] < seen + 10 and time.time() < deadline:
        time.sleep(0.3)
    last = httpx.get(f"{url}/v1/cameras/loom7").json()["last_result"]
    assert last["threshold"] == pytest.approx(chosen)  # the camera pipeline uses the new threshold
    assert (last["verdict"] == "DEFECT") == (last["score"] > chosen)
    # above every calibration score, the normal frames (7 of every 8) show OK on the lamp
    expect(page.locator('[data-camera="loom7"] .lamp')).to_have_text("OK", timeout=15_000)
    # the threshold set here is kept (across restarts too) until it is reset to the model's own
    page.click('#tabs button[data-tab="models"]')
    page.click('[data-model="plain"] >> text=Reset to the model\'s threshold')
    expect(page.locator('[data-model="plain"] [data-testid="threshold"]')).not_to_have_text(f"{chosen:.4f}")
    now = httpx.get(f"{url}/v1/models/plain/threshold").json()
    assert now["method"] == "normal-quantile" and now["value"] != pytest.approx(chosen), now
    expect(page.locator('[data-model="plain"] [data-testid="threshold"]')).to_have_text(f"{now['value']:.4f}")
    # a teach-in on the line: the camera's next 20 frames, progress shown, the proposal applied
    page.fill('[aria-label="teach-in frames of plain"]', "20")
    page.click('[data-model="plain"] >> text=Teach in on good fabric')
    expect(page.get_by_test_id("teach-in-ready")).to_contain_text("on 20 frames", timeout=60_000)
    page.screenshot(path=ARTIFACTS / "dashboard-teach-in.png")
    page.click('[data-model="plain"] >> text=Apply teach-in threshold')
    expect(page.locator('[data-model="plain"]')).to_contain_text("(line-teach-in)")
    # the slider now previews false alarms against the line's own frames
    expect(page.locator('[data-model="plain"] .preview')).to_contain_text("false alarms on the line's good fabric (teach-in, 20 frames)")
    assert httpx.get(f"{url}/v1/models/plain/threshold").json()["calibration_count"] == 20
    expect(page.get_by_test_id("teach-in")).to_contain_text("Teach in on good fabric")  # ended
    # size rules in fabric millimetres: set on the card, in force on the engine, cleared again
    page.fill('[aria-label="mm per pixel of plain"]', "0.5")
    page.fill('[aria-label="shortest length, mm of plain"]', "3")
    page.fill('[aria-label="selvedge band, mm of plain"]', "10")
    page.click('[data-model="plain"] >> text=Apply size rules')
    expect(page.get_by_test_id("operating-point")).to_contain_text("≥ 3 mm at 0.5 mm/px")
    expect(page.get_by_test_id("operating-point")).to_contain_text("10 mm beside the fabric edges uninspected")
    op = httpx.get(f"{url}/v1/models/plain/operating-point").json()
    assert op["min_length_mm"] == 3 and op["selvedge_mm"] == 10 and op["selvedge_threshold"] is None
    page.fill('[aria-label="selvedge threshold (empty: band uninspected) of plain"]', "2.5")  # the band judged apart
    page.click('[data-model="plain"] >> text=Apply size rules')
    expect(page.get_by_test_id("operating-point")).to_contain_text("10 mm beside the fabric edges judged at 2.500")
    assert httpx.get(f"{url}/v1/models/plain/operating-point").json()["selvedge_threshold"] == 2.5
    page.click('[data-model="plain"] >> text=Threshold alone')
    expect(page.get_by_test_id("operating-point")).to_contain_text("every region above the threshold")
    assert httpx.get(f"{url}/v1/models/plain/operating-point").status_code == 404

    # rolls: start one from the form; it is listed with its grade and its map
    page.click('#tabs button[data-tab="rolls"]')
    page.fill('#roll-start [name="id"]', "R-77")
    page.fill('#roll-start [name="article"]', "plain")
    page.fill('#roll-start [name="width_mm"]', "128")
    page.fill('#roll-start [name="speed_m_per_min"]', "30")
    page.fill('#roll-start [name="cameras"]', "loom7@0:1")
    page.click("#roll-start button[type=submit]")
    expect(page.locator('#roll-table tr[data-id="R-77"]')).to_be_visible()
    expect(page.get_by_test_id("rollmap")).to_be_visible()
    expect(page.get_by_test_id("roll-grade")).to_contain_text("points")
    page.screenshot(path=ARTIFACTS / "dashboard-rolls.png")

    # a roll whose camera skipped a stretch: hatched on the map, its length in words, and it fails
    from tests.live_server import png

    roll = {"id": "R-78", "article": "plain", "width_mm": 128, "cameras": [{"camera_id": "cam-x"}]}
    assert httpx.post(f"{url}/v1/rolls", json=roll, headers={"X-API-Key": ADMIN}).status_code == 201
    cloth = png(render_fabric(FABRICS["plain"], 128, 128, np.random.default_rng(5)))
    for along in (0.0, 0.5):
        sent = httpx.post(f"{url}/v1/inspect?camera_id=cam-x&along_m={along}", content=cloth,
                          headers={"content-type": "image/png"}, timeout=30)
        assert sent.status_code == 200 and sent.json()["roll_id"] == "R-78"
    page.click('#tabs button[data-tab="rolls"]')
    page.click('#roll-table tr[data-id="R-78"]')
    expect(page.get_by_test_id("roll-uninspected")).to_contain_text("not inspected: 0.37 m in 1 stretch")
    expect(page.get_by_test_id("uninspected")).to_have_count(1)
    expect(page.get_by_test_id("roll-grade")).to_contain_text("FAIL")
    page.screenshot(path=ARTIFACTS / "dashboard-roll-uninspected.png")

    # a tablet: the same page, one column
    page.set_viewport_size({"width": 800, "height": 1200})
    page.click('#tabs button[data-tab="live"]')
    box = page.locator('[data-camera="loom7"]').bounding_box()
    assert box["width"] > 700
    page.screenshot(path=ARTIFACTS / "dashboard-tablet.png")


def test_inspect_by_drop_and_operator_limits(live, page):
    from tests.live_server import OPERATOR

    image, _ = render_roll("plain", 128, 128, [PlacedDefect("hole", 40, 40, 40, 40)], seed=9)
    path = ARTIFACTS / "drop.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    page.goto(live.url)
    page.fill("#key", OPERATOR)
    page.click("#signin")
    expect = sync_api.expect
    expect(page.get_by_test_id("role")).to_have_text("signed in: operator (API key)")
    page.click('#tabs button[data-tab="inspect"]')
    page.set_input_files("#file", str(path))
    expect(page.get_by_test_id("inspect-verdict")).to_have_text("DEFECT", timeout=30_000)
    expect(page.locator("#inspect-result img")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "dashboard-inspect.png")
    # a web drifting under the camera: the scan is scored turned back to the training weave, and says so
    sheared = shear(render_fabric(FABRICS["plain"], 128, 512, np.random.default_rng(5)), 0.3)
    cv2.imwrite(str(ARTIFACTS / "drop-sheared.png"), cv2.cvtColor(sheared, cv2.COLOR_RGB2BGR))
    page.set_input_files("#file", str(ARTIFACTS / "drop-sheared.png"))
    expect(page.locator("#inspect-result p")).to_contain_text("weave sheared -0.30 to match training", timeout=30_000)
    # a web break: only the scanner's white in view; the page says nothing was inspected
    cv2.imwrite(str(ARTIFACTS / "drop-white.png"), np.full((128, 128, 3), 255, np.uint8))
    page.set_input_files("#file", str(ARTIFACTS / "drop-white.png"))
    expect(page.locator("#inspect-result p")).to_contain_text("no fabric in view", timeout=30_000)
    page.click('#tabs button[data-tab="models"]')
    expect(page.locator('[data-model="plain"] input[type=range]')).to_be_disabled()  # operators cannot change thresholds
    expect(page.locator('[data-model="plain"] > p.hint')).to_contain_text("aligns the weave to training")
    expect(page.get_by_test_id("defect-types")).to_contain_text("no type classifier")  # the bundle has none
    expect(page.get_by_role("button", name="Refit defect types from labels")).to_be_disabled()  # admins only


def test_the_live_page_shows_each_line_connection_as_it_comes_and_goes(trained_models, tmp_path, page):
    """A Modbus PLC that is not there yet shows as disconnected with the reason; once it answers,
    connected (a real pymodbus server, refreshed by the page on its own)."""
    from tests.live_server import _free_port
    from tests.plc import ModbusPlc

    port = _free_port()
    outputs = [{"kind": "modbus", "name": "loom7-plc", "port": port, "cameras": ["loom7"]}]
    server = Server(trained_models, tmp_path, FABRICAD_LINE_OUTPUTS=json.dumps(outputs),
                    FABRICAD_LINE_OUTBOX_DIR=str(tmp_path / "outbox"))
    plc = None
    try:
        page.goto(server.url)
        row = page.locator('#line-table tr[data-sink="loom7-plc"]')
        sync_api.expect(row.get_by_test_id("line-state")).to_have_text("disconnected", timeout=15_000)
        sync_api.expect(row).to_contain_text(f"cannot reach the PLC at 127.0.0.1:{port}")
        plc = ModbusPlc(port=port)
        sync_api.expect(row.get_by_test_id("line-state")).to_have_text("connected", timeout=20_000)
        sync_api.expect(row).to_contain_text("modbus")
        page.screenshot(path=ARTIFACTS / "dashboard-line.png")
    finally:
        server.stop()
        if plc is not None:
            plc.stop()
