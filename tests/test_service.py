"""The inspection service, tested as it runs: a real uvicorn server on loopback, a real SQLite
file, real ONNX Runtime sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from fabricad.data import load_dataset  # noqa: E402
from fabricad.data.alignment import shear  # noqa: E402
from fabricad.data.synthetic import FABRICS, render_fabric  # noqa: E402
from tests.databases import database_url, forget_migrations  # noqa: E402
from tests.live_server import ADMIN, OPERATOR, Server, _free_port  # noqa: E402
from tests.live_server import png as _png  # noqa: E402


@pytest.fixture()
def server(models_dir, tmp_path):
    srv = Server(models_dir, tmp_path)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fabric_png(fabric_category) -> bytes:
    return _png(load_dataset(fabric_category).test[0].load())


def test_inspect_raw_and_multipart(server, fabric_png):
    raw = httpx.post(f"{server.url}/v1/inspect?overlay=true&heatmap=true", content=fabric_png,
                     headers={"content-type": "image/png"}, timeout=30)
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["verdict"] in ("OK", "DEFECT") and body["model"] == "plain-a"
    assert (body["width"], body["height"]) == (128, 128)
    overlay = cv2.imdecode(np.frombuffer(__import__("base64").b64decode(body["overlay_png_base64"]), np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape == (128, 128, 3)
    multipart = httpx.post(f"{server.url}/v1/inspect", files={"file": ("a.png", fabric_png, "image/png")}, timeout=30)
    assert multipart.status_code == 200 and multipart.json()["score"] == pytest.approx(body["score"], rel=1e-5)


def test_a_frame_without_fabric_is_reported_not_passed_as_good_cloth(server, fabric_png):
    """A web break: the camera sees only the scanner's white. The fabric ROI (on by default) zeroes
    it all, so the score alone would read as flawless cloth; the answer says no fabric was seen,
    and /metrics counts such frames for the line's monitoring."""
    white = httpx.post(f"{server.url}/v1/inspect", content=_png(np.full((128, 128, 3), 255, np.uint8)),
                       headers={"content-type": "image/png"}, timeout=30).json()
    assert white["fabric_in_view"] is False and white["score"] == 0 and white["verdict"] == "OK"
    cloth = httpx.post(f"{server.url}/v1/inspect", content=fabric_png, headers={"content-type": "image/png"}, timeout=30)
    assert cloth.json()["fabric_in_view"] is True
    assert 'fabricad_frames_without_fabric_total{model="plain-a"} 1.0' in httpx.get(f"{server.url}/metrics").text


def test_defects_are_logged_listed_and_acknowledged(server, fabric_png):
    url = server.url
    assert httpx.put(f"{url}/v1/models/plain-a/threshold", json={"value": 0.0}).status_code == 401
    assert httpx.put(f"{url}/v1/models/plain-a/threshold", json={"value": 0.0}, headers={"X-API-Key": OPERATOR}).status_code == 403
    put = httpx.put(f"{url}/v1/models/plain-a/threshold", json={"value": 1e-6}, headers={"X-API-Key": ADMIN})
    assert put.status_code == 200 and put.json()["method"] == "manual"
    result = httpx.post(f"{url}/v1/inspect?camera_id=cam1", content=fabric_png, timeout=30).json()
    assert result["verdict"] == "DEFECT" and result["regions"] and result["defect_id"]
    listing = httpx.get(f"{url}/v1/defects", params={"camera_id": "cam1"}).json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == result["defect_id"]
    defect_id = result["defect_id"]
    image = httpx.get(f"{url}/v1/defects/{defect_id}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert httpx.get(f"{url}/v1/defects/{defect_id}/overlay").status_code == 200
    assert httpx.post(f"{url}/v1/defects/{defect_id}/ack", json={"label": "false_alarm"}).status_code == 401
    ack = httpx.post(f"{url}/v1/defects/{defect_id}/ack", json={"label": "false_alarm"}, headers={"X-API-Key": OPERATOR})
    assert ack.status_code == 200 and ack.json()["acknowledged"] and ack.json()["label"] == "false_alarm"
    assert httpx.get(f"{url}/v1/defects", params={"acknowledged": False}).json()["total"] == 0
    assert httpx.get(f"{url}/v1/defects/999999").status_code == 404
    metrics = httpx.get(f"{url}/metrics").text
    assert 'fabricad_inspections_total{model="plain-a",verdict="DEFECT"} 1.0' in metrics
    assert "fabricad_defects_logged_total" in metrics
    assert "fabricad_inspect_queue_depth 0.0" in metrics and "fabricad_inspect_in_flight 0.0" in metrics
    # a web drifting under the camera: scored turned to the training weave, and the log keeps how
    assert httpx.get(f"{url}/v1/models").json()[0]["texture_alignment"] is True
    turned = httpx.post(f"{url}/v1/inspect?camera_id=cam2", content=_sheared_png(), timeout=30).json()
    assert turned["alignment"]["shear"] == pytest.approx(-0.3, abs=0.03) and turned["defect_id"]
    assert httpx.get(f"{url}/v1/defects/{turned['defect_id']}").json()["alignment"] == turned["alignment"]
    assert httpx.get(f"{url}/v1/defects/{defect_id}").json()["alignment"] is None


def _sheared_png() -> bytes:
    """Plain weave whose rows slid sideways (shear 0.3), as under a drifting web."""
    return _png(shear(render_fabric(FABRICS["plain"], 128, 512, np.random.default_rng(5)), 0.3))


def test_alignment_can_be_turned_off(models_dir, tmp_path):
    srv = Server(models_dir, tmp_path, FABRICAD_ALIGN_TEXTURE="false")
    try:
        assert httpx.get(f"{srv.url}/v1/models").json()[0]["texture_alignment"] is False
        result = httpx.post(f"{srv.url}/v1/inspect", content=_sheared_png(), timeout=30)
        assert result.status_code == 200 and result.json()["alignment"] is None
    finally:
        srv.stop()


def test_a_defect_log_from_an_earlier_version_is_upgraded_in_place(tmp_path):
    """A database written before a column existed gets it added; its records stay readable."""
    import sqlite3

    from fabricad.service.database import Database
    from fabricad.service.defect_log import DefectLog

    url, image = f"sqlite:///{tmp_path / 'defects.db'}", np.zeros((8, 8, 3), np.uint8)
    result = {"score": 0.9, "normalized_score": 0.7, "threshold": 0.5, "regions": []}
    old_id = DefectLog(Database(url), tmp_path / "images").record(model="m", model_version="v", result=result,
                                                                   image=image, overlay=None)
    with sqlite3.connect(tmp_path / "defects.db") as connection:  # as the earlier version left it: no migrations
        connection.execute("ALTER TABLE defects DROP COLUMN alignment_json")
        forget_migrations(connection)
    log = DefectLog(Database(url), tmp_path / "images")
    turned = {**result, "alignment": {"mirror": True, "shear": 0.25, "gain": 0.03}}
    new_id = log.record(model="m", model_version="v", result=turned, image=image, overlay=None)
    assert log.get(old_id).alignment_json is None and log.get(old_id).score == 0.9
    assert json.loads(log.get(new_id).alignment_json) == turned["alignment"]
    assert log.list()[1] == 2


def _zero_png(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height (no need to hold the pixels)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bad_input_gets_a_reason_and_the_server_stays_up(models_dir, tmp_path, fabric_png):
    cases = {
        "empty body": (b"", 400),
        "not an image": (b"definitely not an image", 415),
        "truncated png": (fabric_png[: len(fabric_png) // 2], 400),
        "enormous dimensions": (_zero_png(100_000, 100_000), 413),
        "too small": (_png(np.zeros((4, 4, 3), np.uint8)), 422),
        "over the byte limit": (fabric_png + b"\0" * 100, 413),
    }
    srv = Server(models_dir, tmp_path, FABRICAD_MAX_UPLOAD_BYTES=str(len(fabric_png) + 10))
    try:
        for case, (payload, status) in cases.items():
            response = httpx.post(f"{srv.url}/v1/inspect", content=payload, headers={"content-type": "image/png"}, timeout=30)
            assert response.status_code == status, (case, response.text)
            assert response.json()["detail"] and "Traceback" not in response.text
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        assert httpx.post(f"{srv.url}/v1/inspect", content=fabric_png, timeout=30).status_code == 200
        assert 'fabricad_inspections_total{model="plain-a",verdict' in httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.stop()


def test_batch_reports_bad_items_and_inspects_the_rest(server, fabric_png):
    files = [("files", ("good.png", fabric_png, "image/png")), ("files", ("bad.png", b"garbage", "image/png"))]
    response = httpx.post(f"{server.url}/v1/inspect/batch", files=files, timeout=60)
    assert response.status_code == 200
    results = response.json()["results"]
    assert "verdict" in results[0] and results[1]["filename"] == "bad.png" and results[1]["error"]


def test_teach_in_sets_the_threshold_from_the_lines_good_fabric(server):
    """The line runs fabric known to be good; the model's threshold is set from the scores of what
    it sees there, only frames with fabric in view and from the camera asked for."""
    from fabricad.inference.thresholds import from_normal_scores

    url, admin = server.url, {"X-API-Key": ADMIN}
    cloth = [_png(render_fabric(FABRICS["plain"], 128, 128, np.random.default_rng(seed))) for seed in range(20)]

    def send(image: bytes, camera: str) -> dict:
        return httpx.post(f"{url}/v1/inspect?camera_id={camera}", content=image, headers={"content-type": "image/png"},
                          timeout=30).json()

    body = {"frames": 20, "target_fpr": 0.05, "camera_id": "loom3"}
    assert httpx.post(f"{url}/v1/models/plain-a/teach-in", json=body, headers={"X-API-Key": OPERATOR}).status_code == 403
    assert httpx.post(f"{url}/v1/models/nope/teach-in", json=body, headers=admin).status_code == 404
    assert httpx.post(f"{url}/v1/models/plain-a/teach-in", json={**body, "frames": 5}, headers=admin).status_code == 422
    started = httpx.post(f"{url}/v1/models/plain-a/teach-in", json=body, headers=admin)
    assert started.status_code == 201 and started.json()["state"] == "collecting"
    send(cloth[0], "loom4")  # another camera
    send(_png(np.full((128, 128, 3), 255, np.uint8)), "loom3")  # a web break: no fabric in view
    scores = [send(image, "loom3")["score"] for image in cloth[:10]]
    status = httpx.get(f"{url}/v1/models/plain-a/teach-in").json()
    assert status["collected"] == 10 and status["proposed"] is None
    early = httpx.post(f"{url}/v1/models/plain-a/teach-in/apply", headers=admin)
    assert early.status_code == 409 and "10 of 20" in early.json()["detail"]
    scores += [send(image, "loom3")["score"] for image in cloth[10:]]
    send(cloth[0], "loom3")  # one more than asked for: not counted
    status = httpx.get(f"{url}/v1/models/plain-a/teach-in").json()
    expected = from_normal_scores(scores, 0.05).value
    assert status["state"] == "ready" and status["collected"] == 20
    assert status["proposed"]["value"] == pytest.approx(expected, rel=1e-6)
    applied = httpx.post(f"{url}/v1/models/plain-a/teach-in/apply", headers=admin).json()
    assert applied["method"] == "line-teach-in" and applied["calibration_count"] == 20
    assert httpx.get(f"{url}/v1/models/plain-a/threshold").json()["value"] == pytest.approx(expected, rel=1e-6)
    assert send(cloth[0], "loom3")["threshold"] == pytest.approx(expected, rel=1e-6)
    preview = httpx.get(f"{url}/v1/models/plain-a/calibration", params={"value": float(np.median(scores))}).json()
    assert preview["normal_source"] == "teach-in" and sorted(preview["normal_scores"]) == pytest.approx(sorted(scores))
    assert preview["false_alarm_rate"] == pytest.approx(np.mean(np.array(scores) > np.median(scores)))
    assert httpx.get(f"{url}/v1/models/plain-b/calibration").json()["normal_source"] == "bundle"
    # a false-alarm target given later is measured on the line's frames too
    retuned = httpx.put(f"{url}/v1/models/plain-a/threshold", json={"target_fpr": 0.2}, headers=admin).json()
    assert retuned["method"] == "line-teach-in" and retuned["value"] == pytest.approx(from_normal_scores(scores, 0.2).value)
    assert httpx.get(f"{url}/v1/models/plain-a/teach-in").status_code == 404  # ended
    httpx.post(f"{url}/v1/models/plain-b/teach-in", json=body, headers=admin)
    assert httpx.delete(f"{url}/v1/models/plain-b/teach-in", headers=admin).status_code == 204
    assert httpx.get(f"{url}/v1/models/plain-b/teach-in").status_code == 404


def test_hot_swap_under_load_fails_no_request(server, fabric_png):
    failures, seen, stop = [], set(), threading.Event()

    def client():
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                r = c.post(f"{server.url}/v1/inspect", content=fabric_png)
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    seen.add(r.json()["model"])

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for name in ("plain-b", "plain-a", "plain-b"):
            time.sleep(0.5)
            r = httpx.post(f"{server.url}/v1/models/{name}/activate", headers={"X-API-Key": ADMIN}, timeout=60)
            assert r.status_code == 200 and r.json()["active"]
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen == {"plain-a", "plain-b"}
    models = {m["name"]: m for m in httpx.get(f"{server.url}/v1/models").json()}
    assert models["plain-b"]["active"] and not models["plain-a"]["active"]
    assert httpx.post(f"{server.url}/v1/models/../activate", headers={"X-API-Key": ADMIN}).status_code in (404, 405)
    assert httpx.post(f"{server.url}/v1/models/nope/activate", headers={"X-API-Key": ADMIN}).status_code == 404


def _wait_for(predicate, seconds: float = 30.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_bundles_exported_while_the_service_runs_join_it(models_dir, tmp_path, fabric_png):
    """Onboarding or retraining a fabric must not stop the line: a service started before any
    model was exported becomes ready once a bundle lands in its folder; a half-copied bundle is
    skipped (and taken once it is whole); the active bundle exported again in place is reloaded;
    a bundle added later can be activated at once by name."""
    import shutil

    folder = tmp_path / "models"
    folder.mkdir()
    server = Server(folder, tmp_path / "srv", require_ready=False, FABRICAD_MODELS_RESCAN_S="0.3")
    try:
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        # Cut short before it enters the folder: a scan between a whole copy and the cut would
        # rightly take the bundle (a race CI met under load).
        staging = tmp_path / "staging"
        shutil.copytree(models_dir / "plain-a", staging)
        whole = (staging / "model.onnx").read_bytes()
        (staging / "model.onnx").write_bytes(whole[: len(whole) // 2])  # still being copied
        staging.rename(folder / "broken")
        graph = folder / "broken" / "model.onnx"
        time.sleep(1.5)  # several scans
        assert httpx.get(f"{server.url}/v1/models").json() == []
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        shutil.copytree(models_dir / "plain-a", folder / "fabric-a")
        assert _wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200), "the new bundle never became active"
        assert httpx.get(f"{server.url}/readyz").json()["model"] == "fabric-a"
        assert httpx.post(f"{server.url}/v1/inspect", content=fabric_png, headers={"content-type": "image/png"},
                          timeout=30).json()["model"] == "fabric-a"
        graph.write_bytes(whole)  # the copy finished
        assert _wait_for(lambda: "broken" in [m["name"] for m in httpx.get(f"{server.url}/v1/models").json()])

        # The active model exported again in place (here: another threshold): reloaded and swapped
        # in, while a copy caught half-way leaves the loaded one serving.
        threshold = lambda: httpx.get(f"{server.url}/v1/models/fabric-a/threshold").json()["value"]  # noqa: E731
        before = threshold()
        live_graph = folder / "fabric-a" / "model.onnx"
        live_graph.write_bytes(whole[:1000])
        time.sleep(1.5)
        assert threshold() == before and httpx.get(f"{server.url}/readyz").status_code == 200
        assert httpx.post(f"{server.url}/v1/inspect", content=fabric_png, headers={"content-type": "image/png"},
                          timeout=30).status_code == 200
        meta_path = folder / "fabric-a" / "model.json"
        meta = json.loads(meta_path.read_text())
        meta["threshold"]["value"] = before * 3
        meta_path.write_text(json.dumps(meta))
        live_graph.write_bytes(whole)
        assert _wait_for(lambda: threshold() == pytest.approx(before * 3)), "the bundle exported again was not reloaded"
        assert httpx.get(f"{server.url}/readyz").json()["model"] == "fabric-a"
        assert 'fabricad_model_info{model="fabric-a"' in httpx.get(f"{server.url}/metrics").text
        shutil.rmtree(folder / "broken")  # retired: it leaves the list
        assert [m["name"] for m in httpx.get(f"{server.url}/v1/models").json()] == ["fabric-a"]
    finally:
        server.stop()
    # With the periodic look turned off, a name asked for is still looked up on disk.
    quiet = Server(folder, tmp_path / "quiet", FABRICAD_MODELS_RESCAN_S="0")
    try:
        shutil.copytree(models_dir / "plain-b", folder / "fabric-b")
        r = httpx.post(f"{quiet.url}/v1/models/fabric-b/activate", headers={"X-API-Key": ADMIN}, timeout=60)
        assert r.status_code == 200 and r.json()["active"], r.text
        assert httpx.get(f"{quiet.url}/readyz").json()["model"] == "fabric-b"
    finally:
        quiet.stop()


def test_killed_server_loses_no_logged_defect(models_dir, tmp_path, fabric_png):
    first = Server(models_dir, tmp_path)
    httpx.put(f"{first.url}/v1/models/plain-a/threshold", json={"value": 1e-6}, headers={"X-API-Key": ADMIN})
    teach_in = {"frames": 40, "target_fpr": 0.05, "camera_id": "loom3"}
    assert httpx.post(f"{first.url}/v1/models/plain-b/teach-in", json=teach_in, headers={"X-API-Key": ADMIN}).status_code == 201
    ids = [httpx.post(f"{first.url}/v1/inspect", content=fabric_png, timeout=30).json()["defect_id"] for _ in range(3)]
    httpx.post(f"{first.url}/v1/defects/{ids[0]}/ack", json={"label": "hole"}, headers={"X-API-Key": OPERATOR})
    first.kill()  # no shutdown handler runs
    first.stop()
    second = Server(models_dir, tmp_path)
    try:
        listing = httpx.get(f"{second.url}/v1/defects").json()
        assert sorted(item["id"] for item in listing["items"]) == sorted(ids)
        acked = httpx.get(f"{second.url}/v1/defects/{ids[0]}").json()
        assert acked["acknowledged"] and acked["label"] == "hole"
        assert httpx.get(f"{second.url}/v1/defects/{ids[1]}/image").status_code == 200
        # The threshold set on the line holds across the restart, until reset to the bundle's.
        kept = httpx.get(f"{second.url}/v1/models/plain-a/threshold").json()
        assert kept["value"] == pytest.approx(1e-6) and kept["method"] == "manual"
        assert httpx.delete(f"{second.url}/v1/models/plain-a/threshold", headers={"X-API-Key": OPERATOR}).status_code == 403
        reset = httpx.delete(f"{second.url}/v1/models/plain-a/threshold", headers={"X-API-Key": ADMIN}).json()
        bundle = json.loads((models_dir / "plain-a" / "model.json").read_text())["threshold"]
        assert reset == bundle and httpx.get(f"{second.url}/v1/models/plain-b/threshold").json() == bundle
        # So does a teach-in in progress (one more test: test_a_teach_in_in_progress_survives_a_restart).
        resumed = httpx.get(f"{second.url}/v1/models/plain-b/teach-in").json()
        assert (resumed["state"], resumed["frames"], resumed["camera_id"]) == ("collecting", 40, "loom3")
    finally:
        second.stop()


def test_a_threshold_set_for_one_bundle_version_is_not_given_to_another(tmp_path):
    """Kept in a real database; a model exported again (another graph hash) has scores of its
    own and keeps its bundle's threshold; forgetting removes it."""
    from fabricad.inference.bundle import Threshold
    from fabricad.service.database import Database
    from fabricad.service.thresholds import ThresholdStore

    url = database_url(tmp_path)
    ThresholdStore(Database(url)).save("denim", "abc123", Threshold(value=0.7, method="manual"))
    store = ThresholdStore(Database(url))  # as after a restart
    assert store.stored("denim", "abc123").value == 0.7
    assert store.stored("denim", "def456") is None and store.stored("twill", "abc123") is None
    store.forget("denim")
    assert ThresholdStore(Database(url)).stored("denim", "abc123") is None


def test_a_teach_in_in_progress_survives_a_restart(tmp_path):
    """Kept in a real database every SAVE_EVERY frames: a restart part-way resumes with the
    frames saved (the last few may be lost), the bundle version it started on, and its camera;
    a finished one is gone."""
    from fabricad.service.database import Database
    from fabricad.service.teach_in import SAVE_EVERY, TeachIns
    from fabricad.service.thresholds import ThresholdStore

    url = database_url(tmp_path)

    def restarted() -> TeachIns:
        return TeachIns(ThresholdStore(Database(url)))

    running = restarted()
    running.start("denim", 50, 0.01, camera_id="loom3", version="abc123")
    running.start("twill", 50, 0.01)
    for i in range(SAVE_EVERY + 3):
        running.offer("denim", "loom3", float(i))
    resumed = restarted().get("denim")
    assert resumed.scores == [float(i) for i in range(SAVE_EVERY)]
    assert (resumed.version, resumed.camera_id, resumed.frames, resumed.ready) == ("abc123", "loom3", 50, False)
    assert restarted().get("twill").scores == []
    # The resumed one goes on where it stopped; each save adds the new scores, in order.
    second = restarted()
    for i in range(SAVE_EVERY, 2 * SAVE_EVERY):
        second.offer("denim", "loom3", float(i))
    assert restarted().get("denim").scores == [float(i) for i in range(2 * SAVE_EVERY)]
    # Started again, it starts from nothing; finished, it is gone.
    second.start("denim", 50, 0.01, version="abc123")
    assert restarted().get("denim").scores == [] and restarted().get("denim").camera_id is None
    second.finish("denim")
    assert restarted().get("denim") is None and restarted().get("twill") is not None


def test_a_teach_in_is_not_applied_to_a_model_exported_again(models_dir, tmp_path, fabric_png):
    """Scores collected on one graph say nothing about another: once the bundle is exported again
    (another graph hash) under the same name, the old teach-in is refused with a reason."""
    import shutil

    import onnx

    from fabricad.inference.bundle import sha256_file

    folder = tmp_path / "models"
    shutil.copytree(models_dir / "plain-a", folder / "fabric")
    server = Server(folder, tmp_path / "srv", FABRICAD_MODELS_RESCAN_S="0.3")
    admin = {"X-API-Key": ADMIN}
    try:
        version = lambda: httpx.get(f"{server.url}/v1/models").json()[0]["version"]  # noqa: E731
        before = version()
        assert httpx.post(f"{server.url}/v1/models/fabric/teach-in", json={"frames": 20}, headers=admin).status_code == 201
        for _ in range(20):
            httpx.post(f"{server.url}/v1/inspect", content=fabric_png, headers={"content-type": "image/png"}, timeout=30)
        assert httpx.get(f"{server.url}/v1/models/fabric/teach-in").json()["state"] == "ready"
        graph = onnx.load(str(folder / "fabric" / "model.onnx"))  # "exported again": another graph
        onnx.helper.set_model_props(graph, {"retrained": "yes"})
        onnx.save(graph, str(folder / "fabric" / "model.onnx"))
        meta_path = folder / "fabric" / "model.json"
        meta = json.loads(meta_path.read_text())
        meta["sha256"] = sha256_file(folder / "fabric" / "model.onnx")
        meta_path.write_text(json.dumps(meta))
        assert _wait_for(lambda: version() != before), "the bundle exported again was never reloaded"
        refused = httpx.post(f"{server.url}/v1/models/fabric/teach-in/apply", headers=admin)
        assert refused.status_code == 409 and "exported again" in refused.json()["detail"]
        assert httpx.get(f"{server.url}/v1/models/fabric/threshold").json()["method"] != "line-teach-in"
    finally:
        server.stop()


def test_openapi_schema_and_readiness(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/inspect", "/v1/inspect/batch", "/v1/models", "/v1/defects", "/v1/defects/{defect_id}/ack", "/readyz"):
        assert path in schema["paths"]
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready == {"ready": True, "model": "plain-a", "problems": []}


def test_not_ready_without_models(tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    port = _free_port()
    env = {**os.environ, "FABRICAD_MODELS_DIR": str(empty), "FABRICAD_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}",
           "FABRICAD_IMAGE_STORE": str(tmp_path / "img")}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "fabricad.service.app:create_app", "--factory", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    try:
        for _ in range(100):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert response.status_code == 503 and "no active model" in response.json()["problems"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        process.terminate()
        process.wait(10)


def test_uploads_run_at_most_inspect_workers_at_once(tmp_path):
    """More clients than workers wait in line instead of splitting the cores among all of them."""
    import asyncio

    from fabricad.service.dependencies import AppState
    from fabricad.service.settings import ServiceSettings

    state = AppState(ServiceSettings(inspect_workers=2, models_dir=tmp_path), registry=None, database=None, defects=None,
                     metrics=None, pipeline=None)
    running, peak, lock = [0], [0], threading.Lock()

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i

    async def clients():
        return await asyncio.gather(*(state.run_inspection(work, i) for i in range(8)))

    async def clients_then_one_client():
        await clients()
        return {await state.run_inspection(threading.get_ident) for _ in range(10)}

    async def load_while_busy():
        started = [state.run_inspection(work, i) for i in range(5)]
        tasks = [asyncio.ensure_future(t) for t in started]
        await asyncio.sleep(0.02)
        load = state.inspect_load()
        await asyncio.gather(*tasks)
        return load, state.inspect_load()

    assert asyncio.run(clients()) == list(range(8))
    assert peak[0] == 2
    assert asyncio.run(load_while_busy()) == ((2, 3), (0, 0))  # what /metrics reports
    # After a busy spell, a lone client's runs stay on one thread (ONNX Runtime is slower when
    # the calling thread changes between runs).
    assert len(asyncio.run(clients_then_one_client())) == 1


def test_reads_can_require_a_key(models_dir, tmp_path, fabric_png):
    """FABRICAD_REQUIRE_KEY_FOR_READS: every read and inspection needs a key of any role; the
    probes an orchestrator calls stay open."""
    srv = Server(models_dir, tmp_path, FABRICAD_REQUIRE_KEY_FOR_READS="true")
    try:
        url = srv.url
        for path in ("/v1/models", "/v1/defects", "/v1/rolls"):
            refused = httpx.get(f"{url}{path}")
            assert refused.status_code == 401 and "API key" in refused.json()["detail"]
            assert httpx.get(f"{url}{path}", headers={"X-API-Key": OPERATOR}).status_code == 200
        for key in ("wrong-key", None):
            headers = {"content-type": "image/png", **({"X-API-Key": key} if key else {})}
            assert httpx.post(f"{url}/v1/inspect", content=fabric_png, headers=headers, timeout=30).status_code == 401
        allowed = httpx.post(f"{url}/v1/inspect", content=fabric_png, timeout=30,
                             headers={"content-type": "image/png", "X-API-Key": OPERATOR})
        assert allowed.status_code == 200 and allowed.json()["model"] == "plain-a"
        assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").status_code == 200
    finally:
        srv.stop()


def test_serve_speaks_https_with_a_certificate(models_dir, tmp_path):
    """`fabricad serve --ssl-certfile/--ssl-keyfile`: TLS straight from uvicorn, for a line
    without a reverse proxy; plain HTTP on that port is refused."""
    import datetime
    import subprocess
    import sys

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from tests.live_server import _free_port, wait_for

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    import ssl

    trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    port = _free_port()
    env = {**__import__("os").environ, "FABRICAD_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}",
           "FABRICAD_IMAGE_STORE": str(tmp_path / "img")}
    process = subprocess.Popen([sys.executable, "-m", "fabricad.cli", "serve", "--models", str(models_dir), "--port", str(port),
                                "--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"https://localhost:{port}/readyz", verify=trust, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 120, "the HTTPS service")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"https://localhost:{port}/healthz", timeout=5)  # an unknown certificate is refused by the client
        plain = None
        try:
            plain = httpx.get(f"http://localhost:{port}/healthz", timeout=5).status_code
        except httpx.TransportError:
            pass
        assert plain != 200  # no plain HTTP on the TLS port
    finally:
        process.terminate()
        process.wait(20)
