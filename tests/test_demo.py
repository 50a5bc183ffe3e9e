"""`fabricad demo`, as a newcomer runs it, on a small budget: it trains, evaluates, exports, serves
the dashboard with a simulated camera, answers /readyz, flags a defective frame, stops cleanly and
reuses its work on a second run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabricad.data.synthetic import PlacedDefect, render_roll
from tests.browser import ARTIFACTS, browser_missing, browser_page
from tests.live_server import _free_port, png

httpx = pytest.importorskip("httpx")
FABRICAD = [sys.executable, "-m", "fabricad.cli"]  # the installed `fabricad` command, from this interpreter


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    port = _free_port()
    env = {**os.environ, "FABRICAD_DATA": ""}
    env.pop("FABRICAD_DATA")
    log = open(tmp_path / "demo.log", "w+")
    command = [*FABRICAD, "demo", "--workdir", str(tmp_path / "demo"), "--max-steps", "60", "--train-images", "12",
               "--port", str(port), "--fps", "4", "--roll-length-m", "3"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 420
        while time.time() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        output = Path(log.name).read_text()
        assert process.poll() is None, f"demo exited early:\n{output[-3000:]}"
        assert httpx.get(f"{url}/readyz").json()["ready"], output[-3000:]
        assert "image_auroc" in output and f"http://localhost:{port}/" in output
        assert (tmp_path / "demo" / "eval" / "metrics.json").is_file()
        assert (tmp_path / "demo" / "models" / "demo-plain" / "model.onnx").is_file()
        assert httpx.get(url).text.startswith("<!doctype html>")  # the dashboard

        defective, _ = render_roll("plain", 256, 256, [PlacedDefect("hole", 90, 90, 70, 70)], seed=11)
        verdict = httpx.post(f"{url}/v1/inspect", content=png(defective), headers={"content-type": "image/png"}, timeout=30).json()
        assert verdict["verdict"] == "DEFECT", verdict
        # the simulated camera streams and is inspected
        deadline = time.time() + 60
        while time.time() < deadline and httpx.get(f"{url}/v1/cameras/demo-line").json()["frames_processed"] < 4:
            time.sleep(0.5)
        assert httpx.get(f"{url}/v1/cameras/demo-line").json()["frames_processed"] >= 4
        key = (tmp_path / "demo" / "api-key.txt").read_text().strip()
        assert httpx.get(f"{url}/v1/whoami", headers={"X-API-Key": key}).json()["role"] == "admin"
        password = (tmp_path / "demo" / "admin-password.txt").read_text().strip()
        assert f"sign in as admin / {password}" in output

        # the headline: a simulated roll on that camera ends with a map, a grade and its PDF
        deadline = time.time() + 90
        while time.time() < deadline and not httpx.get(f"{url}/v1/rolls?status=ended").json():
            time.sleep(0.5)
        ended = httpx.get(f"{url}/v1/rolls?status=ended").json()
        assert ended, Path(log.name).read_text()[-2000:]
        roll = httpx.get(f"{url}/v1/rolls/{ended[0]['id']}").json()
        assert roll["length_m"] >= 2.9 and roll["uninspected"] == [] and roll["defect_list"]  # seen end to end
        assert httpx.get(f"{url}/v1/rolls/{roll['id']}/report.pdf").content.startswith(b"%PDF")
        assert f"roll {roll['id']}: ended" in Path(log.name).read_text()
        if browser_missing() is None:
            from playwright.sync_api import expect

            with browser_page() as page:
                page.goto(url)
                page.fill("#user", "admin")  # as a new user would: the name and password the demo printed
                page.fill("#key", password)
                page.click("#signin")
                expect(page.get_by_test_id("role")).to_have_text("signed in: admin (admin)")
                page.click('#tabs button[data-tab="rolls"]')
                page.click(f'#roll-table tr[data-id="{roll["id"]}"]')
                expect(page.get_by_test_id("rollmap")).to_be_visible()
                expect(page.locator('[data-testid="rollmap"] rect.defect')).to_have_count(len(roll["defect_list"]))
                expect(page.get_by_test_id("roll-grade")).to_contain_text(f"{roll['grade']['points']} points")
                expect(page.locator("#roll-detail")).not_to_contain_text("null")
                page.screenshot(path=ARTIFACTS / "demo-rolls.png")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    output = Path(log.name).read_text()
    assert code == 0, output[-2000:]
    assert "service stopped" in output

    # a second run reuses every step
    again = subprocess.run([*FABRICAD, "demo", "--workdir", str(tmp_path / "demo"), "--no-serve"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    for step in ("data: reusing", "model: reusing", "evaluation: reusing", "export: reusing"):
        assert step in again.stdout, again.stdout
