"""The operators' feedback loop, closed: frames labelled false alarms retrain the model in a job of
its own, the candidate is judged against the model in use, activated under the same name, and
rolled back. A real service, a real fine-tune process, real bundles."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fabricad.config import FabricadConfig
from fabricad.data.synthetic import FABRICS, add_defect, another_lot, render_fabric
from fabricad.inference.bundle import CHECKPOINT_FILE
from fabricad.inference.retraining import (
    FALSE_ALARMS,
    ComparisonRow,
    RetrainStatus,
    judge,
    write_status,
)
from tests.live_server import ADMIN, OPERATOR, Server, png, wait_for

httpx = pytest.importorskip("httpx")
SIZE = 96


def dye_lot(rng: np.random.Generator) -> np.ndarray:
    """Good plain weave with a band of another dye lot across it: cloth the mill accepts."""
    return another_lot(render_fabric(FABRICS["plain"], SIZE, SIZE, rng), rng)


def hole(rng: np.random.Generator) -> np.ndarray:
    return add_defect(render_fabric(FABRICS["plain"], SIZE, SIZE, rng), "hole", rng, FABRICS["plain"], strength=0.8)[0]


@pytest.fixture(scope="module")
def bundle_with_checkpoint(tmp_path_factory) -> Path:
    """A plain-weave model (the packaged Lite0 teacher, 96 px, 150 steps) exported with its
    checkpoint, as the only bundle of a models folder."""
    from fabricad.data.synthetic import generate_category
    from fabricad.export.onnx_export import export_checkpoint
    from fabricad.training import train

    root = tmp_path_factory.mktemp("retrain")
    category = generate_category(root / "data", "plain", size=(SIZE, SIZE), n_train=30, n_test_good=6, n_test_defect=8,
                                 progress=False)
    config = FabricadConfig().with_overrides([f"data.path={category}", "model.teacher.name=tf_efficientnet_lite0",
                                              f"data.image_size={SIZE}", "model.width=64", "train.max_steps=150",
                                              "train.batch_size=8", "train.patience=100"])
    train(config, root / "run", progress=False)
    bundle = export_checkpoint(root / "run" / "model.ckpt", root / "models" / "plain", progress=False, with_checkpoint=True)
    assert (bundle / CHECKPOINT_FILE).stat().st_size < (root / "run" / "model.ckpt").stat().st_size  # no optimiser state
    return bundle


ADMIN_KEY, OPERATOR_KEY = {"X-API-Key": ADMIN}, {"X-API-Key": OPERATOR}


def serve(bundle: Path, tmp_path: Path, steps: int = 120) -> Server:
    """A service whose only model is a copy of `bundle`; retrains of `steps` steps."""
    shutil.copytree(bundle, tmp_path / "models" / "plain")
    return Server(tmp_path / "models", tmp_path / "svc", FABRICAD_JOBS_DIR=str(tmp_path / "jobs"),
                  FABRICAD_RETRAIN_STEPS=str(steps), FABRICAD_MODELS_RESCAN_S="0")


def inspect(server: Server, image: np.ndarray) -> dict:
    answer = httpx.post(f"{server.url}/v1/inspect", content=png(image), headers={"content-type": "image/png"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def label_frames(server: Server) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Six frames of another dye lot, each raised and labelled a false alarm by an operator, and
    four holes, raised and labelled holes; returns (lots, holes)."""
    rng = np.random.default_rng(5)
    lots, holes = [dye_lot(rng) for _ in range(6)], [hole(rng) for _ in range(4)]
    for images, label in ((lots, "false_alarm"), (holes, "hole")):
        for image in images:
            body = inspect(server, image)
            assert body["verdict"] == "DEFECT", (label, body["score"], body["threshold"])  # the model raises every one
            assert httpx.post(f"{server.url}/v1/defects/{body['defect_id']}/ack", json={"label": label},
                              headers=OPERATOR_KEY).status_code == 200
    return lots, holes


def test_false_alarms_retrain_the_model_which_is_activated_and_rolled_back(bundle_with_checkpoint, tmp_path):
    server = serve(bundle_with_checkpoint, tmp_path)
    admin, operator = ADMIN_KEY, OPERATOR_KEY
    url = f"{server.url}/v1/models/plain"

    def version() -> str:
        return httpx.get(f"{server.url}/v1/models").json()[0]["version"]

    try:
        lots, holes = label_frames(server)
        ready = httpx.get(f"{url}/retrain").json()
        assert ready["available"] and ready["false_alarms"] == 6 and ready["confirmed_defects"] == 4 and ready["job"] is None
        assert httpx.post(f"{url}/retrain", headers=operator).status_code == 403  # admins retrain

        started = httpx.post(f"{url}/retrain", headers=admin, json={})
        assert started.status_code == 202, started.text
        assert started.json()["job"]["state"] == "running" and started.json()["job"]["steps"] == 120
        again = httpx.post(f"{url}/retrain", headers=admin, json={})
        assert again.status_code == 409 and "already running" in again.json()["detail"]
        seen = []

        def finished():
            job = httpx.get(f"{url}/retrain").json()["job"]
            seen.append((job["phase"], job["step"]))
            return job if job["state"] != "running" else None

        job = wait_for(finished, timeout=600, what="the retrain job", every=0.5)
        assert job["state"] == "done", job["error"]
        assert any(phase == "fine-tuning" and 0 < step < 120 for phase, step in seen), seen  # progress, as it happens
        rows = {row["measure"]: row for row in job["comparison"]}
        labelled = rows[FALSE_ALARMS]
        assert labelled["old"] == 1.0 and labelled["new"] < labelled["old"] and labelled["verdict"] == "better"
        caught = rows["confirmed defects caught"]
        assert (caught["old"], caught["new"]) == (1.0, 1.0)
        assert job["verdict"] == "better" and job["offered"]

        old = version()
        assert old == job["old_version"]
        assert httpx.post(f"{url}/retrain/activate", headers=operator).status_code == 403
        activated = httpx.post(f"{url}/retrain/activate", headers=admin)
        assert activated.status_code == 200, activated.text
        assert version() == job["new_version"] != old
        assert not (tmp_path / "jobs" / "plain" / job["job"] / "bundle").exists()  # moved into the models folder
        after = [inspect(server, image) for image in lots]
        assert sum(a["verdict"] == "DEFECT" for a in after) < len(lots)  # what the operators said is cloth passes
        assert all(inspect(server, image)["verdict"] == "DEFECT" for image in holes)  # and the holes still stop the line
        assert {a["model_version"] for a in after} == {job["new_version"]}
        history = httpx.get(f"{url}/history").json()
        assert [k["version"] for k in history] == [old]
        assert httpx.post(f"{url}/retrain/activate", headers=admin).status_code == 409  # activated once

        rolled = httpx.post(f"{url}/rollback", headers=admin, json={})
        assert rolled.status_code == 200, rolled.text
        assert version() == old and not (tmp_path / "models" / "plain" / "kept.json").exists()
        assert all(inspect(server, image)["verdict"] == "DEFECT" for image in lots)  # the old model, as it was
        assert [k["version"] for k in rolled.json()["history"]] == [job["new_version"]]  # the candidate is kept in turn
        actions = [e["action"] for e in httpx.get(f"{server.url}/v1/audit", headers=admin).json()]
        assert {"model.retrain.start", "model.retrain.activate", "model.rollback"} <= set(actions)
    finally:
        server.stop()


def test_a_job_that_cannot_run_is_reported_failed_with_its_reason(bundle_with_checkpoint, tmp_path):
    """A line PC whose Python lacks the training side: the job ends at once, and says why."""
    from fabricad.service.database import Database
    from fabricad.service.defect_log import DefectLog
    from fabricad.service.registry import ModelRegistry
    from fabricad.service.retraining import Retraining, RetrainRefused

    shutil.copytree(bundle_with_checkpoint, tmp_path / "models" / "plain")
    defects = DefectLog(Database(f"sqlite:///{tmp_path / 'db.sqlite'}"), tmp_path / "images")
    rng = np.random.default_rng(1)
    registry = ModelRegistry(tmp_path / "models")
    retraining = Retraining(tmp_path / "jobs", registry, defects, python=sys.executable)
    result = {"score": 1.0, "normalized_score": 0.9, "threshold": 0.5, "regions": []}
    for i in range(3):
        record = defects.record(model="plain", model_version="v", result=result, image=dye_lot(rng), overlay=None)
        if i < 2:
            defects.acknowledge(record, "false_alarm", None, by="ayse")
    with pytest.raises(RetrainRefused, match="needs 3"):
        retraining.start("plain")
    defects.acknowledge(record, "false_alarm", None, by="ayse")

    broken = Retraining(tmp_path / "jobs", registry, defects, python=str(tmp_path / "no-python"))
    with pytest.raises(RetrainRefused, match="cannot start"):
        broken.start("plain")
    assert broken.status("plain").state == "failed"
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no system Python to stand for an environment without fabricad")
    system = Retraining(tmp_path / "jobs", registry, defects, python="/usr/bin/python3")
    system.start("plain")
    status = wait_for(lambda: (s := system.status("plain")) and s.state != "running" and s, timeout=60, what="the job's end")
    assert status.state == "failed" and "No module named" in status.error

    (tmp_path / "models" / "plain" / CHECKPOINT_FILE).unlink()
    assert "--with-checkpoint" in retraining.refusal("plain", 3)


def test_a_candidate_worse_on_a_gate_is_withheld_and_cannot_be_activated(bundle_with_checkpoint, tmp_path):
    from fabricad.service.database import Database
    from fabricad.service.defect_log import DefectLog
    from fabricad.service.registry import ModelRegistry
    from fabricad.service.retraining import Retraining, RetrainRefused

    rows = [ComparisonRow(measure=FALSE_ALARMS, images=6, old=1.0, new=0.2, better="lower"),
            ComparisonRow(measure="confirmed defects caught", images=4, old=1.0, new=0.75, better="higher"),
            ComparisonRow(measure="held-out normal images alarmed", images=3, old=0.0, new=0.34, better="lower", gate=False)]
    verdict, reasons = judge(rows)
    assert verdict == "worse" and reasons == ["confirmed defects caught: 100.0 % → 75.0 %"]
    assert judge(rows[:1] + rows[2:])[0] == "better"  # a figure shown only does not withhold
    within = ComparisonRow(measure="test images: AUROC", images=40, old=0.95, new=0.945, better="higher", tolerance=0.01)
    assert within.verdict == "same" and judge([within])[0] == "not_worse"

    shutil.copytree(bundle_with_checkpoint, tmp_path / "models" / "plain")
    registry = ModelRegistry(tmp_path / "models")
    retraining = Retraining(tmp_path / "jobs", registry, DefectLog(Database(f"sqlite:///{tmp_path / 'db.sqlite'}"), tmp_path / "i"))
    job = tmp_path / "jobs" / "plain" / "20261207T000000000000Z"
    shutil.copytree(bundle_with_checkpoint, job / "bundle")
    write_status(job / "status.json", RetrainStatus(job=job.name, model="plain", state="done", verdict=verdict, reasons=reasons,
                                                    comparison=rows, old_version=registry.entry("plain").version))
    with pytest.raises(RetrainRefused, match="worse"):
        retraining.activate("plain")
    assert retraining.history("plain") == [] and registry.entry("plain").path.is_dir()
    assert retraining.cancel("plain").state == "discarded" and not (job / "bundle").exists()


def test_export_with_checkpoint_is_a_fine_tunable_bundle(bundle_with_checkpoint):
    from fabricad.training import read_checkpoint

    checkpoint = read_checkpoint(bundle_with_checkpoint / CHECKPOINT_FILE)
    assert "optimizer" not in checkpoint.training and checkpoint.training["dataset"]["train"] > 0
    assert checkpoint.score_stats["scores"] and checkpoint.config.data.image_size == (SIZE, SIZE)


def test_the_dashboard_retrains_activates_and_rolls_back(bundle_with_checkpoint, tmp_path):
    from tests.browser import ARTIFACTS, browser_missing, browser_page

    if browser_missing():
        pytest.skip(browser_missing())
    sync_api = pytest.importorskip("playwright.sync_api")
    server = serve(bundle_with_checkpoint, tmp_path, steps=60)  # the clicks, not the figures: a shorter job
    try:
        label_frames(server)
        old = httpx.get(f"{server.url}/v1/models").json()[0]["version"]
        with browser_page() as page:
            expect = sync_api.expect
            page.goto(server.url)
            page.fill("#key", ADMIN)
            page.click("#signin")
            page.click('#tabs button[data-tab="models"]')
            card = page.locator('[data-model="plain"] [data-testid="retrain"]')
            card.get_by_role("button", name="Retrain with 6 confirmed false alarms").click()
            expect(card.get_by_test_id("retrain-progress")).to_contain_text("retraining", timeout=20_000)
            page.screenshot(path=ARTIFACTS / "dashboard-retrain-running.png")
            expect(card.get_by_test_id("retrain-verdict")).to_contain_text("better than the model in use", timeout=600_000)
            expect(card.locator("table.comparison tr.better")).not_to_have_count(0)
            page.screenshot(path=ARTIFACTS / "dashboard-retrain-done.png")
            card.get_by_role("button", name="Activate the candidate").click()
            expect(card.get_by_test_id("retrain-history")).to_contain_text(old, timeout=30_000)
            new = httpx.get(f"{server.url}/v1/models").json()[0]["version"]
            assert new != old
            expect(page.locator('[data-model="plain"] > p.hint')).to_contain_text(new)
            card.get_by_role("button", name=f"Roll back to {old}").click()
            expect(page.locator('[data-model="plain"] > p.hint')).to_contain_text(old, timeout=30_000)
            expect(card.get_by_test_id("retrain-history")).to_contain_text(new)
        assert httpx.get(f"{server.url}/v1/models").json()[0]["version"] == old
    finally:
        server.stop()
