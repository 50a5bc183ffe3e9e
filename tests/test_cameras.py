"""Camera pipeline: overload behaviour in isolation, then a video file as a camera on a real server."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fabricad.data import load_dataset
from fabricad.service.cameras import CameraManager, CameraSpec

httpx = pytest.importorskip("httpx")
websockets_sync = pytest.importorskip("websockets.sync.client")


class _Inspected:
    """What the inspection pipeline hands the camera manager back with each frame's event."""

    def __init__(self, image):
        self.overlay = image.copy()


def test_overload_drops_oldest_frames_and_counts_them(tmp_path):
    folder = tmp_path / "media" / "frames"
    folder.mkdir(parents=True)
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((32, 32, 3), i * 40, np.uint8))
    seen: list[int] = []
    gate = threading.Event()

    def slow_batch(model, frames):
        gate.wait(5)  # inference stalls while frames keep arriving
        seen.extend(f.sequence for f in frames)
        return [({"is_defect": False, "verdict": "OK", "normalized_score": 0.1}, _Inspected(f.image)) for f in frames]

    manager = CameraManager(tmp_path / "media", slow_batch, max_batch=2)
    try:
        camera = manager.add(CameraSpec(id="fast", source="media:frames", fps=100, queue_size=3))
        deadline = time.time() + 10
        while camera.frames_captured < 30 and time.time() < deadline:
            time.sleep(0.05)
        assert len(camera.queue) <= 3
        assert camera.frames_dropped >= camera.frames_captured - 3 - 2 - 1
        gate.set()
        deadline = time.time() + 20
        while camera.latest_jpeg is None and time.time() < deadline:
            time.sleep(0.05)
        assert camera.frames_processed > 0 and camera.latest_jpeg is not None
        assert seen == sorted(seen)  # order within a camera is kept
    finally:
        manager.shutdown()
    assert camera.state == "stopped"


def test_unreachable_camera_is_retried_and_reported(tmp_path):
    manager = CameraManager(tmp_path, lambda m, f: [], backoff_max=0.2)
    try:
        camera = manager.add(CameraSpec(id="gone", source="media:nothing-here"))
        deadline = time.time() + 10
        while camera.state != "reconnecting" and time.time() < deadline:
            time.sleep(0.05)
        assert camera.state == "reconnecting" and "nothing-here" in camera.error
    finally:
        manager.shutdown()


@pytest.mark.parametrize("source", ["media:../secret", "file:///etc/passwd", "media:/abs", "usb:x"])
def test_camera_sources_never_take_a_path(source):
    with pytest.raises(ValueError):
        CameraSpec(id="c", source=source)


@pytest.fixture()
def camera_server(models_dir, tmp_path, fabric_category):
    from tests.live_server import Server

    media = tmp_path / "media"
    media.mkdir()
    writer = cv2.VideoWriter(str(media / "line.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128))
    for sample in load_dataset(fabric_category).test[:6]:
        writer.write(cv2.imread(str(sample.path)))
    writer.release()
    server = Server(models_dir, tmp_path, FABRICAD_MEDIA_DIR=str(media))
    yield server
    server.stop()


def test_video_file_camera_streams_events_mjpeg_and_defects(camera_server):
    from tests.live_server import ADMIN

    url = camera_server.url
    admin = {"X-API-Key": ADMIN}
    assert httpx.put(f"{url}/v1/models/plain-a/threshold", json={"value": 1e-6}, headers=admin).status_code == 200
    created = httpx.post(f"{url}/v1/cameras", json={"id": "loom1", "source": "media:line.avi", "fps": 8}, headers=admin)
    assert created.status_code == 201, created.text
    assert httpx.post(f"{url}/v1/cameras", json={"id": "loom1", "source": "media:line.avi"}, headers=admin).status_code == 409
    assert httpx.post(f"{url}/v1/cameras", json={"id": "x", "source": "media:line.avi"}).status_code == 401

    ws_url = url.replace("http://", "ws://") + "/v1/cameras/loom1/events"
    with websockets_sync.connect(ws_url, open_timeout=10) as ws:
        events = [json.loads(ws.recv(timeout=20)) for _ in range(3)]
    assert all(e["camera_id"] == "loom1" and e["verdict"] == "DEFECT" and e["defect_id"] for e in events)
    assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)

    jpegs = 0
    with httpx.stream("GET", f"{url}/v1/cameras/loom1/stream.mjpeg", timeout=20) as response:
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        for chunk in response.iter_bytes():
            buffer += chunk
            jpegs = buffer.count(b"\xff\xd8")
            if jpegs >= 2:
                break
    assert jpegs >= 2

    status = httpx.get(f"{url}/v1/cameras/loom1").json()
    assert status["state"] == "running" and status["frames_processed"] >= 3
    logged = httpx.get(f"{url}/v1/defects", params={"camera_id": "loom1"}).json()
    assert logged["total"] >= 3
    assert 'fabricad_camera_frames_processed_total{camera="loom1"}' in httpx.get(f"{url}/metrics").text
    assert httpx.post(f"{url}/v1/cameras/loom1/stop", headers=admin).json()["state"] == "stopped"
    assert httpx.delete(f"{url}/v1/cameras/loom1", headers=admin).status_code == 204
    assert httpx.get(f"{url}/v1/cameras/loom1").status_code == 404
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_client_leaving_an_idle_camera_does_not_hold_up_shutdown(models_dir, tmp_path):
    """A WebSocket handler waiting for events of an idle camera must notice its client left;
    otherwise the server waits for it forever on SIGTERM (and Docker kills it)."""
    from websockets.sync.client import connect

    from tests.live_server import ADMIN, Server

    server = Server(models_dir, tmp_path)
    added = httpx.post(f"{server.url}/v1/cameras?start=false", json={"id": "idle", "source": "media:nothing"},
                       headers={"X-API-Key": ADMIN})
    assert added.status_code == 201
    with connect(f"ws://127.0.0.1:{server.port}/v1/cameras/idle/events"):
        time.sleep(0.5)
    time.sleep(0.5)
    began = time.time()
    server.process.terminate()
    assert server.process.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert time.time() - began < 5
    server.stop()


def test_metrics_follow_prometheus_conventions(camera_server):
    """Scraped as Prometheus would: counts are counters named *_total, levels are gauges, the
    model is an *_info metric, each camera has an up gauge, process and platform metrics are
    there — the names the example Grafana dashboard and alert rules (docker/) use."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.live_server import ADMIN

    url, admin = camera_server.url, {"X-API-Key": ADMIN}
    assert httpx.post(f"{url}/v1/cameras", json={"id": "loom2", "source": "media:line.avi", "fps": 8}, headers=admin).status_code == 201
    assert httpx.post(f"{url}/v1/cameras", json={"id": "gone", "source": "usb:9"}, headers=admin).status_code == 201
    deadline = time.time() + 30
    while httpx.get(f"{url}/v1/cameras/loom2").json()["frames_processed"] < 2 and time.time() < deadline:
        time.sleep(0.2)
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)}
    kinds = {name: f.type for name, f in families.items()}
    for name in ("fabricad_inspections", "fabricad_defects_logged", "fabricad_camera_frames_captured",
                 "fabricad_camera_frames_processed", "fabricad_camera_frames_dropped", "fabricad_camera_defects",
                 "fabricad_line_messages_sent", "fabricad_line_messages_dropped", "process_cpu_seconds"):
        assert kinds.get(name) == "counter", (name, kinds.get(name))
    for name in ("fabricad_camera_up", "fabricad_camera_queue_depth", "fabricad_inspect_in_flight",
                 "fabricad_inspect_queue_depth", "fabricad_line_connected", "process_resident_memory_bytes"):
        assert kinds.get(name) == "gauge", (name, kinds.get(name))
    assert kinds["fabricad_inspect_latency_seconds"] == "histogram"
    for family in families.values():  # the conventions, for every fabricad metric
        names = {s.name for s in family.samples}
        if family.type == "counter":
            assert all(n.endswith(("_total", "_created")) for n in names), names
        elif family.name.startswith("fabricad_"):
            assert not any(n.endswith("_total") for n in names), names
    up = {s.labels["camera"]: s.value for s in families["fabricad_camera_up"].samples}
    assert up == {"loom2": 1.0, "gone": 0.0}
    processed = {s.labels["camera"]: s.value for s in families["fabricad_camera_frames_processed"].samples}
    assert processed["loom2"] >= 2 and processed["gone"] == 0
    info = [s for s in families["fabricad_model_info"].samples]
    active = httpx.get(f"{url}/readyz").json()["model"]
    assert [s.labels["model"] for s in info] == [active] and info[0].value == 1.0 and info[0].labels["version"]
    assert "python_info" in families

    # the example Grafana dashboard and alert rules use only metrics the service exposes
    import re

    import yaml

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}  # declared, maybe no sample yet
    exposed = {f.name + x for f in families.values() for x in ("",) + suffixes.get(f.type, ())} | {"up"}
    docker = Path(__file__).resolve().parents[1] / "docker"
    rules = yaml.safe_load((docker / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    dashboard = json.loads((docker / "grafana" / "fabricad-dashboard.json").read_text())
    expressions = [r["expr"] for r in rules] + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert {r["alert"] for r in rules} >= {"FabricadCameraDown", "FabricadFramesDropped", "FabricadNoFabricInView"}
    for expression in expressions:
        for name in re.findall(r"\b((?:fabricad|process)_[a-z_]+)\b", expression):
            assert name in exposed, f"{name} (in {expression!r}) is not exposed"
