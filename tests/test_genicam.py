"""Industrial cameras over a real GigE Vision link: Debian's `arv-fake-gv-camera-0.8` on
loopback, opened through the GenICam source in area and line-scan modes and as a camera of a
real service (killed and restarted: `reconnecting`, then `running`). The line assembly is
tested on its own first, with the lost buffers and wrapping block ids a real link has.

The fake camera's test pattern is `(x + y + block id) mod 256`, so every assembled line says
which buffer line it came from: the test checks each frame's place against the lines sent."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from fabricad.service.cameras import CameraSpec
from fabricad.service.linescan import LineAssembler, LineScanSettings
from tests.browser import ARTIFACTS, browser_missing, browser_page
from tests.live_server import ADMIN, Server, wait_for

FAKE = shutil.which("arv-fake-gv-camera-0.8")


def aravis_missing() -> str | None:
    if FAKE is None:
        return "needs Debian's aravis-tools (arv-fake-gv-camera-0.8)"
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis  # noqa: F401
    except (ImportError, ValueError) as exc:
        return f"needs Aravis's GObject bindings (gir1.2-aravis-0.8, python3-gi): {exc}"
    return None


needs_aravis = pytest.mark.skipif(aravis_missing() is not None, reason=aravis_missing() or "")


def test_lines_become_frames_at_their_exact_place_and_a_lost_buffer_is_a_counted_gap():
    settings = LineScanSettings(lines_per_frame=8, overlap_lines=2, metres_per_line=0.001)
    assembler = LineAssembler(settings)
    frames = []
    ids = [65533, 65534, 65535, 1, 2, 4, 5, 6, 7, 8]  # a 16-bit id wraps, then buffer 3 never comes
    for k, block in enumerate(ids):
        frames += assembler.push(block, np.full((4, 5), k, np.uint8), at=100.0 + k)
    assert [f.first_line for f in frames] == [0, 6, 12, 24, 30, 36]  # 6 new lines per frame; lines 20–23 lost
    assert [f.image[:, 0].tolist() for f in frames][1] == [1, 1, 2, 2, 2, 2, 3, 3]  # 2 lines of overlap
    assert frames[3].image[:, 0].tolist() == [5] * 4 + [6] * 4  # no frame spans the gap
    assert [f.captured_at for f in frames] == [100.0, 101.0, 103.0, 105.0, 106.0, 108.0]  # its first line's time
    assert assembler.buffers_lost == 1 and assembler.lines_lost == 4
    assert assembler.push(8, np.zeros((4, 5), np.uint8), 0.0) == []  # a late resend is ignored
    with pytest.raises(ValidationError, match="overlap"):
        LineScanSettings(lines_per_frame=8, overlap_lines=8, metres_per_line=0.001)
    with pytest.raises(ValidationError, match="gige"):
        CameraSpec(id="c", source="usb:0", genicam={"exposure_us": 100})
    with pytest.raises(ValidationError, match="gige:NAME"):
        CameraSpec(id="c", source="gige:../etc")


class FakeCamera:
    """Aravis's fake GigE Vision camera on 127.0.0.1 (one at a time: GVCP's port is fixed)."""

    def __init__(self, serial: str):
        self.serial = serial
        self.process = subprocess.Popen([FAKE, "-i", "127.0.0.1", "-s", serial], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        from fabricad.service.genicam import discover

        wait_for(lambda: any(c["serial"] == serial for c in discover()), 10, "the fake camera", every=0.2)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture()
def fake_camera():
    camera = FakeCamera("FAB01")
    yield camera
    camera.kill()


def pattern_origin(line: np.ndarray, index: int, height: int) -> int:
    """The first buffer's block id (mod 256) that makes `line` line number `index`."""
    return (int(line[0, 0]) - index % height - index // height) % 256


@needs_aravis
def test_area_and_line_scan_frames_from_a_gige_vision_camera(fake_camera):
    from fabricad.service.genicam import GenICamSettings, GenICamSource

    area = GenICamSource("cam", "FAB01", GenICamSettings(width=256, height=128, pixel_format="Mono8"), fps=25)
    try:
        grabs = [area.read() for _ in range(4)]
    finally:
        area.close()
    assert all(g.image.shape == (128, 256, 3) and g.odometer_m is None for g in grabs)
    firsts = [int(g.image[0, 0, 0]) for g in grabs]
    assert [(b - a) % 256 for a, b in zip(firsts, firsts[1:])] == [1, 1, 1]  # consecutive frames, none lost
    assert area.health["frames_lost"] == 0 and "Fake" in area.health["device"]
    assert abs(grabs[-1].captured_at - time.time()) < 5

    scan = LineScanSettings(lines_per_frame=64, overlap_lines=16, metres_per_line=0.0005)
    line = GenICamSource("cam", "127.0.0.1", GenICamSettings(width=512, height=16, line_scan=scan), fps=100)
    try:
        frames = [line.read() for _ in range(6)]
    finally:
        line.close()
    lines = [round(g.odometer_m / scan.metres_per_line) for g in frames]
    assert all(g.image.shape == (64, 512, 3) for g in frames)
    steps = [b - a for a, b in zip(lines, lines[1:])]
    assert lines[0] % 16 == 0 and all(step >= 48 and step % 16 == 0 for step in steps)
    assert (steps == [48] * 5) == (line.health["lines_lost"] == 0)  # 64 lines, 16 shared; more only after a loss
    origin = pattern_origin(frames[0].image[:1, :, 0], lines[0], 16)
    for grab, first in zip(frames, lines):  # every row is the line its place says
        expected = [(origin + (first + r) % 16 + (first + r) // 16) % 256 for r in range(64)]
        assert grab.image[:, 0, 0].tolist() == expected


@needs_aravis
def test_a_gige_camera_in_the_service_places_line_scan_frames_on_the_roll_and_reconnects(trained_models, tmp_path,
                                                                                        fake_camera):
    server = Server(trained_models, tmp_path)
    admin = {"X-API-Key": ADMIN}
    spec = {"id": "gv1", "source": "gige:FAB01", "fps": 20,
            "genicam": {"width": 256, "height": 16, "line_scan": {"lines_per_frame": 64, "metres_per_line": 0.001}}}
    try:
        roll = {"id": "R-gv", "article": "plain", "width_mm": 256, "cameras": [{"camera_id": "gv1", "mm_per_px": 1.0}]}
        assert httpx.post(f"{server.url}/v1/rolls", json=roll, headers=admin).status_code == 201
        found = httpx.get(f"{server.url}/v1/cameras/discover", headers=admin).json()
        assert [c["serial"] for c in found] == ["FAB01"] and found[0]["address"] == "127.0.0.1"
        assert httpx.post(f"{server.url}/v1/cameras", json=spec, headers=admin).status_code == 201

        def camera() -> dict:
            return httpx.get(f"{server.url}/v1/cameras/gv1").json()

        wait_for(lambda: camera()["state"] == "running" and camera()["frames_processed"] >= 3, 30, "line-scan frames")
        status = camera()
        assert "Fake" in status["health"]["device"] and status["health"]["acquired_fps"] > 0
        along = status["last_result"]["along_m"]
        assert along == pytest.approx(round(along / 0.064) * 0.064, abs=1e-6)  # a whole number of 64-line frames
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'fabricad_camera_acquired_fps{camera="gv1"}' in metrics

        if browser_missing() is None:  # the camera card shows the camera's own account
            from playwright import sync_api

            with browser_page() as page:
                page.goto(server.url)
                card = page.locator('[data-camera="gv1"]')
                sync_api.expect(card.get_by_test_id("health")).to_contain_text("Fake", timeout=15_000)
                sync_api.expect(card.get_by_test_id("lost")).to_contain_text("lost")
                page.screenshot(path=ARTIFACTS / "dashboard-gige-camera.png")

        fake_camera.kill()  # the camera loses power
        wait_for(lambda: camera()["state"] == "reconnecting", 20, "reconnecting")
        assert "gv1" in camera()["error"] or "FAB01" in camera()["error"]
        restarted = FakeCamera("FAB01")
        fake_camera.process = restarted.process  # the fixture kills it at the end
        seen = camera()["frames_processed"]
        wait_for(lambda: camera()["state"] == "running" and camera()["frames_processed"] > seen + 2, 40, "running again")
        assert camera()["last_result"]["along_m"] >= along  # the roll goes on where it was
    finally:
        server.stop()
