"""The operating point on the line: region size rules in fabric millimetres and zone thresholds
from a teach-in, set through the API, judged by the engine, kept across restarts."""

from __future__ import annotations

import numpy as np
import pytest

from fabricad.data.synthetic import FABRICS, PlacedDefect, render_fabric, render_roll
from fabricad.inference.engine import regions_at
from fabricad.inference.operating_point import OperatingPoint
from fabricad.service.teach_in import TeachIns
from tests.live_server import ADMIN, OPERATOR, Server, png

httpx = pytest.importorskip("httpx")


def selvedge_map(rng: np.random.Generator, defect: float = 0.0) -> np.ndarray:
    """A good frame's map: the left quarter (a selvedge) always runs high, the rest is calm; with
    `defect`, a blob of that height in the middle."""
    amap = rng.uniform(0.05, 0.15, (64, 256)).astype(np.float32)
    amap[:, :64] += 0.7
    if defect:
        amap[30:36, 150:156] = defect
    return amap


def test_zones_give_a_bright_band_its_own_threshold_and_keep_the_middle_sensitive():
    rng = np.random.default_rng(0)
    teach_ins = TeachIns()
    teach_ins.start("m", frames=40, target_fpr=0.01, zones=4)
    for _ in range(40):
        amap = selvedge_map(rng)
        teach_ins.offer("m", None, float(amap.max()), amap)
    teach_in = teach_ins.get("m")
    frame, zones = teach_in.proposal().value, teach_in.zone_proposal()
    assert frame > 0.8 and zones[0] > 0.8 and max(zones[1:]) < 0.3  # the frame threshold is the selvedge's
    middle = selvedge_map(rng, defect=0.5)  # a defect above the calm middle, below the selvedge
    assert regions_at(middle, frame, OperatingPoint()) == []  # one threshold: blind in the middle
    found = regions_at(middle, frame, OperatingPoint(zone_thresholds=zones))
    assert len(found) == 1 and 145 <= found[0].x <= 156  # the defect, and not the selvedge
    assert regions_at(selvedge_map(rng), frame, OperatingPoint(zone_thresholds=zones)) == []


def test_a_zone_teach_in_survives_a_restart(tmp_path):
    from fabricad.service.database import Database
    from fabricad.service.thresholds import ThresholdStore

    store = ThresholdStore(Database(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    rng = np.random.default_rng(1)
    first = TeachIns(store)
    first.start("m", frames=30, target_fpr=0.01, version="v1", zones=4)
    for _ in range(15):
        amap = selvedge_map(rng)
        first.offer("m", None, float(amap.max()), amap, selvedge_score=float(amap[:, :8].max()) if _ % 3 else None)
    resumed = TeachIns(store).get("m")  # saved every 10 frames
    assert resumed.zones == 4 and len(resumed.scores) == 10 and len(resumed.zone_scores) == 10
    assert resumed.zone_scores == first.get("m").zone_scores[:10]
    assert resumed.selvedge_scores == first.get("m").selvedge_scores[:10] and resumed.selvedge_scores.count(None) == 4


def _frames() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    knot, _ = render_roll("plain", 128, 128, [PlacedDefect("knot", 60, 60, 5, 5)], seed=11)
    hole, _ = render_roll("plain", 128, 128, [PlacedDefect("hole", 40, 40, 40, 40)], seed=12)
    return {"good": render_fabric(FABRICS["plain"], 128, 128, rng), "knot": knot, "hole": hole}


def test_size_rules_and_zones_set_on_the_line(trained_models, tmp_path):
    admin = {"X-API-Key": ADMIN}
    frames = _frames()
    server = Server(trained_models, tmp_path / "svc")
    url = f"{server.url}/v1/models/plain"

    def inspect(name: str) -> dict:
        answer = httpx.post(f"{server.url}/v1/inspect", content=png(frames[name]), headers={"content-type": "image/png"},
                            timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()

    try:
        assert httpx.get(f"{url}/operating-point").status_code == 404  # the threshold alone
        knot, hole = inspect("knot"), inspect("hole")
        # a threshold low enough for the knot to raise an alarm, so that the size rule has something to drop
        assert httpx.put(f"{url}/threshold", json={"value": knot["score"] * 0.9}, headers=admin).status_code == 200
        knot, hole = inspect("knot"), inspect("hole")
        assert knot["verdict"] == hole["verdict"] == "DEFECT"
        longest = max(max(r["width"], r["height"]) for r in knot["regions"])
        biggest = max(max(r["width"], r["height"]) for r in hole["regions"])
        assert longest < biggest, (knot["regions"], hole["regions"])
        rule = {"mm_per_px": 0.5, "min_length_mm": 0.5 * (longest + 0.5)}  # between the two, in millimetres
        assert httpx.put(f"{url}/operating-point", json=rule, headers={"X-API-Key": OPERATOR}).status_code == 403
        lone = httpx.put(f"{url}/operating-point", json={**rule, "selvedge_threshold": 2.0}, headers=admin)
        assert lone.status_code == 422 and "give selvedge_mm too" in lone.text  # a band's threshold needs a band
        set_ = httpx.put(f"{url}/operating-point", json=rule, headers=admin)
        assert set_.status_code == 200 and set_.json()["min_length_mm"] == rule["min_length_mm"]
        assert inspect("knot")["verdict"] == "OK" and inspect("hole")["verdict"] == "DEFECT"
        assert all(max(r["width"], r["height"]) * 0.5 >= rule["min_length_mm"] for r in inspect("hole")["regions"])
        server.stop()
        server = Server(trained_models, tmp_path / "svc")  # kept across a restart, with the threshold
        url = f"{server.url}/v1/models/plain"
        assert httpx.get(f"{url}/operating-point").json()["min_length_mm"] == rule["min_length_mm"]
        assert inspect("knot")["verdict"] == "OK" and inspect("hole")["verdict"] == "DEFECT"

        # zones from a teach-in join the size rule; a threshold set by hand drops them again
        started = httpx.post(f"{url}/teach-in", json={"frames": 20, "zones": 4}, headers=admin)
        assert started.status_code == 201 and started.json()["zones"] == 4
        for _ in range(20):
            inspect("good")
        ready = httpx.get(f"{url}/teach-in").json()
        assert ready["state"] == "ready" and len(ready["proposed_zones"]) == 4
        assert httpx.post(f"{url}/teach-in/apply", headers=admin).status_code == 200
        op = httpx.get(f"{url}/operating-point").json()
        assert op["zone_thresholds"] == pytest.approx(ready["proposed_zones"]) and op["min_length_mm"] == rule["min_length_mm"]
        assert httpx.put(f"{url}/threshold", json={"value": knot["threshold"]}, headers=admin).status_code == 200
        assert httpx.get(f"{url}/operating-point").json()["zone_thresholds"] is None
        assert httpx.delete(f"{url}/operating-point", headers=admin).status_code == 204
        assert httpx.get(f"{url}/operating-point").status_code == 404 and inspect("knot")["verdict"] == "DEFECT"
        actions = [e["action"] for e in httpx.get(f"{server.url}/v1/audit", headers=admin).json()]
        assert {"operating_point.set", "operating_point.reset", "teach_in.apply"} <= set(actions)
    finally:
        server.stop()


def test_persistence_keeps_what_was_seen_in_frames_in_a_row():
    from fabricad.rolls.geometry import RollBox
    from fabricad.service.persistence import Persistence

    persistence = Persistence()
    lint, defect = RollBox((10, 14), (1.0, 1.004)), RollBox((200, 210), (1.010, 1.020))
    assert persistence.confirm("cam", [lint, defect], 2) == [False, False]  # nothing before
    moved = RollBox((202, 211), (1.012, 1.022))  # the defect a frame later, 2 mm on (within the gap)
    assert persistence.confirm("cam", [moved], 2) == [True]
    assert persistence.confirm("cam", [lint], 2) == [False]  # lint is not where anything was a frame ago
    assert persistence.confirm("other", [moved], 2) == [False]  # each camera its own run
    for _ in range(2):
        persistence.confirm("cam3", [defect], 3)
    assert persistence.confirm("cam3", [defect], 3) == [True]
    assert persistence.confirm("cam3", [], 3) == [] and persistence.confirm("cam3", [defect], 3) == [False]  # the run broke


def test_a_camera_alarms_on_a_defect_it_sees_twice_and_not_on_a_passing_one(trained_models, tmp_path):
    """The real pipeline, engine and defect log (no HTTP): with persistence 2, a hole seen in one
    frame only raises nothing, the same hole in two frames raises one alarm; an upload at once."""
    from fabricad.service.database import Database
    from fabricad.service.defect_log import DefectLog
    from fabricad.service.metrics import ServiceMetrics
    from fabricad.service.pipeline import InspectionPipeline
    from fabricad.service.registry import ModelRegistry
    from fabricad.service.rolls import RollTracker

    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    registry = ModelRegistry(trained_models)
    registry.activate("plain")
    defects = DefectLog(database, tmp_path / "images")
    pipeline = InspectionPipeline(registry, defects, RollTracker(database), ServiceMetrics(), TeachIns())
    frames = _frames()
    _, engine = registry.engine("plain")
    assert engine.inspect(frames["hole"]).is_defect and not engine.inspect(frames["good"]).is_defect
    engine.use_operating_point(OperatingPoint(persistence_frames=2))
    seen = [pipeline.inspect(frames[name], camera_id="loom1").data["verdict"]
            for name in ("good", "hole", "good", "hole", "hole", "good")]
    assert seen == ["OK", "OK", "OK", "OK", "DEFECT", "OK"]
    assert defects.list()[1] == 1
    assert pipeline.inspect(frames["hole"]).data["verdict"] == "DEFECT"  # an upload has no run to wait for


def _scan(seed: int, hole: bool = False) -> np.ndarray:
    """A line scan of plain cloth beside the machine bed (columns 0-149), whose selvedge carries
    bright yarns of its own (156-161); with `hole`, a hole in the selvedge 15-35 px inside."""
    from tests.test_fabric_edges import bed

    rng = np.random.default_rng(seed)
    scan = render_fabric(FABRICS["plain"], 128, 640, rng)
    scan[:, :150] = bed(128, 150, rng, level=40)
    scan[:, 156:162] = 235
    if hole:
        scan[50:80, 165:185] = 15
    return scan


def test_a_teach_in_beside_a_selvedge_band_teaches_the_band_a_threshold_of_its_own(trained_models, tmp_path):
    """With a selvedge band set, a frame's score is the fabric's beside it and the band's maximum
    comes apart; a teach-in learns a threshold from each; applied, the band is inspected against
    its own: the selvedge's bright yarns raise nothing, a hole in the selvedge does."""
    admin = {"X-API-Key": ADMIN}
    server = Server(trained_models, tmp_path / "svc")
    url = f"{server.url}/v1/models/plain"

    def inspect(image: np.ndarray) -> dict:
        answer = httpx.post(f"{server.url}/v1/inspect", content=png(image), headers={"content-type": "image/png"}, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()

    try:
        assert inspect(_scan(0))["selvedge_score"] is None  # no band: the frame is one score
        band = {"mm_per_px": 0.5, "selvedge_mm": 20}  # 40 px beside the edge
        assert httpx.put(f"{url}/operating-point", json=band, headers=admin).status_code == 200
        first = inspect(_scan(0))
        assert first["selvedge_score"] > first["score"]  # the selvedge's yarns, kept apart
        assert httpx.post(f"{url}/teach-in", json={"frames": 20}, headers=admin).status_code == 201
        for k in range(20):
            inspect(_scan(1 + k))
        ready = httpx.get(f"{url}/teach-in").json()
        frame, own = ready["proposed"]["value"], ready["proposed_selvedge_threshold"]
        assert ready["state"] == "ready" and own is not None and own > frame
        assert httpx.post(f"{url}/teach-in/apply", headers=admin).status_code == 200
        op = httpx.get(f"{url}/operating-point").json()
        assert op["selvedge_threshold"] == pytest.approx(own) and op["selvedge_mm"] == 20
        good, holed = inspect(_scan(40)), inspect(_scan(41, hole=True))
        assert good["verdict"] == "OK" and good["selvedge_score"] < own
        assert holed["selvedge_score"] > own and holed["verdict"] == "DEFECT"
        assert any(150 <= r["x"] <= 190 for r in holed["regions"]), holed["regions"]
        applied = [e for e in httpx.get(f"{server.url}/v1/audit", headers=admin).json() if e["action"] == "teach_in.apply"]
        assert applied and applied[0]["detail"]["selvedge_threshold"] == pytest.approx(own)
    finally:
        server.stop()
