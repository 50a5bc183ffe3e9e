"""`fabricad backup` while a camera streams defects into a real service, then `fabricad restore`
into a fresh database and image store: every defect the backup holds comes back, with its
images, and the service runs on it. (On PostgreSQL too: `pytest --database postgresql`.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import cv2
import httpx
import pytest

from fabricad.data import load_dataset
from fabricad.service.backup import read_manifest
from tests.databases import database_url
from tests.live_server import ADMIN, Server, wait_for

FABRICAD = [sys.executable, "-m", "fabricad.cli"]


def service_env(workdir: Path, **more: str) -> dict[str, str]:
    """The settings `Server(models, workdir)` runs with, for the CLI."""
    return {**os.environ, "FABRICAD_DATABASE_URL": database_url(workdir), "FABRICAD_IMAGE_STORE": str(workdir / "images"),
            "FABRICAD_REPORT_DIR": str(workdir / "reports"), **more}


def defect_ids(url: str) -> set[int]:
    ids, offset = set(), 0
    while True:
        page = httpx.get(f"{url}/v1/defects", params={"offset": offset, "limit": 500}).json()
        ids |= {item["id"] for item in page["items"]}
        offset += len(page["items"])
        if offset >= page["total"] or not page["items"]:
            return ids


def test_a_backup_taken_while_streaming_restores_with_no_defect_lost(models_dir, fabric_category, tmp_path):
    media = tmp_path / "media" / "line"
    media.mkdir(parents=True)
    for i, sample in enumerate(load_dataset(fabric_category).test[:6]):
        cv2.imwrite(str(media / f"{i:02d}.png"), cv2.imread(str(sample.path)))
    live = tmp_path / "live"
    server = Server(models_dir, live, FABRICAD_MEDIA_DIR=str(tmp_path / "media"))
    admin = {"X-API-Key": ADMIN}
    archive = tmp_path / "backups" / "line.tar.gz"
    try:
        assert httpx.put(f"{server.url}/v1/models/plain-a/threshold", json={"value": 1e-6}, headers=admin).status_code == 200
        roll = {"id": "R-bk", "article": "plain", "width_mm": 128, "speed_m_per_min": 6,
                "cameras": [{"camera_id": "loom1", "mm_per_px": 1.0}]}
        assert httpx.post(f"{server.url}/v1/rolls", json=roll, headers=admin).status_code == 201
        assert httpx.post(f"{server.url}/v1/cameras", json={"id": "loom1", "source": "media:line", "fps": 8},
                          headers=admin).status_code == 201
        wait_for(lambda: httpx.get(f"{server.url}/v1/defects").json()["total"] >= 5, 60, "defects from the camera")
        taken = subprocess.run([*FABRICAD, "backup", "--out", str(archive), "-q"], env=service_env(live),
                               capture_output=True, text=True, timeout=120)
        assert taken.returncode == 0, taken.stderr
        time.sleep(1.0)  # the camera goes on after the backup: those defects are not in it
        everything = defect_ids(server.url)
    finally:
        server.stop()
    manifest = read_manifest(archive)
    assert f"#{manifest['last_defect_id']}" in taken.stdout and manifest["defects"] >= 5 and manifest["rolls"] == 1
    assert max(everything) > manifest["last_defect_id"]  # streaming went on after the snapshot
    with tarfile.open(archive) as tar:
        assert {"manifest.json"} | {n for n in tar.getnames() if n.startswith("database.")} <= set(tar.getnames())

    restored = tmp_path / "restored"
    env = service_env(restored)
    put_back = subprocess.run([*FABRICAD, "restore", str(archive), "-q"], env=env, capture_output=True, text=True, timeout=120)
    assert put_back.returncode == 0, put_back.stderr
    again = subprocess.run([*FABRICAD, "restore", str(archive), "-q"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr  # nothing overwritten
    bad = subprocess.run([*FABRICAD, "restore", str(tmp_path / "nothing.tar.gz")], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "no backup at" in bad.stderr

    server = Server(models_dir, restored)
    try:
        back = defect_ids(server.url)  # every defect of the snapshot, and nothing logged after it
        assert len(back) == manifest["defects"] and max(back) == manifest["last_defect_id"] and back <= everything
        if database_url(restored).startswith("sqlite"):  # one writer: ids commit in order, the snapshot has no gap
            assert back == {i for i in everything if i <= manifest["last_defect_id"]}
        for defect_id in sorted(back):
            assert httpx.get(f"{server.url}/v1/defects/{defect_id}/image").status_code == 200
        assert httpx.get(f"{server.url}/v1/rolls/R-bk").json()["id"] == "R-bk"
        # the restored service goes on logging after the restored ids
        assert httpx.put(f"{server.url}/v1/models/plain-a/threshold", json={"value": 1e-6}, headers=admin).status_code == 200
        frame = (media / "00.png").read_bytes()
        answer = httpx.post(f"{server.url}/v1/inspect", content=frame, headers={"content-type": "image/png"}, timeout=30).json()
        assert answer["defect_id"] > manifest["last_defect_id"]
    finally:
        server.stop()


@pytest.mark.parametrize("entry", ["../evil.txt", "/etc/evil"])
def test_restore_refuses_an_archive_that_writes_outside_its_folders(tmp_path, entry):
    import io
    import json

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, body in (("manifest.json", json.dumps({"format": 1, "database": "sqlite", "defects": 0, "rolls": 0}).encode()),
                           (entry, b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    env = service_env(tmp_path / "target", FABRICAD_DATABASE_URL=f"sqlite:///{tmp_path / 'target.db'}")
    result = subprocess.run([*FABRICAD, "restore", str(archive), "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "refusing the entry" in result.stderr
    assert not (tmp_path / "evil.txt").exists()
