"""Defect types: descriptors and the classifier learn types from labelled defects, the file
round-trips without pickle, the engine names each region, and `fabricad train-types` writes the
classifier into a bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fabricad.data import load_dataset
from fabricad.data.synthetic import generate_category
from fabricad.defect_types import TYPES_FILE, describe, geometry_type, load_types
from fabricad.defect_types.examples import dataset_examples, mask_boxes
from fabricad.defect_types.fit import fit_types, leave_one_image_out
from fabricad.errors import FabricadError

TYPES = ("hole", "stain", "broken_yarn", "fold")


@pytest.fixture(scope="module")
def typed_category(tmp_path_factory):
    return generate_category(tmp_path_factory.mktemp("typed"), "plain", size=(128, 128), n_train=1, n_test_good=1,
                             n_test_defect=32, defect_types=TYPES, progress=False)


@pytest.fixture(scope="module")
def examples(typed_category):
    return dataset_examples(load_dataset(typed_category, None), progress=False)


def test_geometry_rules_tell_lines_along_and_across_from_spots():
    assert geometry_type(4, 60).type == "line_along"
    assert geometry_type(60, 4).type == "line_across"
    assert geometry_type(12, 20).type == "spot"
    assert geometry_type(12, 20).confidence is None


def test_mask_parts_close_together_are_one_defect():
    mask = np.zeros((100, 100), bool)
    mask[10:12, 10:40] = True
    mask[10:12, 44:70] = True  # a 4 px gap: the same broken yarn
    mask[80:85, 80:85] = True  # far away: another defect
    mask[50, 50] = True  # a speck below MIN_PIXELS: noise
    boxes = sorted(mask_boxes(mask))
    assert boxes == [(10, 10, 60, 2), (80, 80, 5, 5)]


def test_descriptors_see_direction_and_contrast():
    rng = np.random.default_rng(0)
    cloth = rng.normal(128, 6, (128, 128)).clip(0, 255).astype(np.uint8)
    along, across, hole = cloth.copy(), cloth.copy(), cloth.copy()
    along[20:100, 60:63] = 40
    across[60:63, 20:100] = 40
    hole[56:72, 56:72] = 250
    names = ("log_aspect", "orientation_cos", "contrast_mean", "dark_share")
    from fabricad.defect_types.descriptors import FEATURE_NAMES
    at = {n: FEATURE_NAMES.index(n) for n in names}
    a, b, h = describe(along, (60, 20, 3, 80)), describe(across, (20, 60, 80, 3)), describe(hole, (56, 56, 16, 16))
    assert a[at["log_aspect"]] > 2 and b[at["log_aspect"]] < -2
    assert a[at["orientation_cos"]] < -0.9 and b[at["orientation_cos"]] > 0.9  # moments agree with the box
    assert a[at["contrast_mean"]] < -5 and a[at["dark_share"]] > 0.9
    assert h[at["contrast_mean"]] > 5 and h[at["dark_share"]] < 0.1
    assert np.isfinite(describe(cloth[:, :, None].repeat(3, 2), (0, 0, 500, 500))).all()  # a box past the edge


def test_classifier_names_unseen_defects_better_than_the_rules(examples):
    assert {e.label for e in examples} == set(TYPES) and len(examples) >= 32
    figures = leave_one_image_out(examples)
    ours, rules = figures["classifier"], figures["geometry_rules"]
    assert ours["accuracy"] >= 0.8, ours
    assert ours["macro_f1"] > rules["macro_f1"] + 0.3, (ours, rules)
    assert set(ours["per_type"]) == set(TYPES)


def test_classifier_file_round_trips_and_rejects_other_descriptors(tmp_path, examples):
    model = fit_types(examples, unknown_below=0.6)
    model.save(tmp_path)
    loaded = load_types(tmp_path)
    x = np.asarray([e.features for e in examples[:8]])
    assert np.allclose(loaded.probabilities(x), model.probabilities(x))
    verdicts = loaded.judge(x)
    assert all(v.type == "unknown" or v.confidence >= 0.6 for v in verdicts)
    assert sum(v.type == e.label for v, e in zip(verdicts, examples[:8])) >= 6  # its own training examples
    assert loaded.counts == {t: 8 for t in TYPES}
    raw = json.loads((tmp_path / TYPES_FILE).read_text())
    raw["feature_names"] = raw["feature_names"][:-1]
    (tmp_path / TYPES_FILE).write_text(json.dumps(raw))
    with pytest.raises(FabricadError, match="other descriptors"):
        load_types(tmp_path)
    (tmp_path / TYPES_FILE).write_text("{not json")
    with pytest.raises(FabricadError, match="not a defect-type classifier"):
        load_types(tmp_path)
    assert load_types(tmp_path / "nowhere") is None


def test_one_type_is_not_a_classifier(examples):
    from fabricad.errors import DataError

    with pytest.raises(DataError, match="at least two types"):
        fit_types([e for e in examples if e.label == "hole"])


def test_train_types_writes_the_bundle_classifier_and_the_engine_names_regions(tmp_path, models_dir, typed_category):
    from fabricad.data.images import read_image
    from fabricad.inference.engine import InferenceEngine

    bundle = tmp_path / "plain"
    shutil.copytree(models_dir / "plain-a", bundle)
    image = read_image(sorted((typed_category / "test" / "hole").glob("*.png"))[0])
    engine = InferenceEngine.load(bundle)
    engine.set_threshold(0.0)  # every frame a defect: regions to name
    plain = engine.inspect(image)
    assert plain.regions and all(r.type in ("spot", "line_along", "line_across") and r.type_confidence is None
                                 for r in plain.regions)

    run = subprocess.run([sys.executable, "-m", "fabricad", "train-types", "--bundle", str(bundle), "--data",
                          str(typed_category), "-q"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "leave-one-image-out" in run.stdout and (bundle / TYPES_FILE).is_file()
    engine = InferenceEngine.load(bundle)
    engine.set_threshold(0.0)
    named = engine.inspect(image).regions
    assert named and all(r.type in (*TYPES, "unknown") and r.type_confidence is not None for r in named)
    assert "type" in engine.inspect(image).as_dict()["regions"][0]

    bad = subprocess.run([sys.executable, "-m", "fabricad", "train-types", "--bundle", str(tmp_path), "--data",
                          str(typed_category)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not an exported bundle" in bad.stderr and "Traceback" not in bad.stderr


def test_a_predicted_type_grades_like_a_label_and_the_report_counts_points_per_type():
    from fabricad.rolls.grading import (
        GradedDefect,
        GradingRules,
        defect_points,
        grading_type,
    )
    from fabricad.rolls.report import points_by_type, roll_map, type_colours

    rules = GradingRules(compact_as_hole_max_mm=None)
    small = ((0.0, 30.0), (0.0, 0.030))  # 30 mm: 1 point as a defect, 4 as a hole over 25 mm
    assert defect_points(GradedDefect(1, *small, grading_type("hole")), rules) == 4
    assert defect_points(GradedDefect(2, *small, grading_type("nep")), rules) == 1
    for unsure in ("unknown", "spot", "line_along", None):
        assert grading_type(unsure) is None
    defects = [{"id": 1, "type": "hole", "points": 4, "along_m": [0.1, 0.13], "across_mm": [0, 30]},
               {"id": 2, "type": "nep", "points": 1, "along_m": [0.5, 0.51], "across_mm": [5, 10]},
               {"id": 3, "type": "hole", "label": "false_alarm", "points": 0, "along_m": [0.7, 0.71], "across_mm": [5, 10]},
               {"id": 4, "type": "nep", "points": 2, "along_m": [0.8, 0.81], "across_mm": [5, 10]}]
    assert points_by_type(defects) == [("hole", 1, 4), ("nep", 2, 3), ("false_alarm", 1, 0)]
    colours = type_colours(defects)
    assert colours["hole"] != colours["nep"] and colours["false_alarm"] == (150, 150, 150)
    picture = roll_map({"id": "R", "article": "a", "length_m": 1.0, "width_mm": 100}, defects)
    assert (picture == np.array(colours["hole"], np.uint8)).all(axis=2).sum() > 20  # the hole drawn in its colour


def test_operators_type_labels_refit_the_classifier_of_a_running_service(tmp_path, models_dir, typed_category):
    """A real service: frames inspected, acknowledged with types, the classifier refitted by the
    API, and the next frame's regions named by it."""
    httpx = pytest.importorskip("httpx")
    from tests.live_server import ADMIN, OPERATOR, Server, png

    models = tmp_path / "models"
    shutil.copytree(models_dir / "plain-a", models / "plain-a")
    server = Server(models, tmp_path / "svc")
    admin, operator = {"X-API-Key": ADMIN}, {"X-API-Key": OPERATOR}
    url = f"{server.url}/v1/models/plain-a"
    try:
        assert httpx.get(f"{url}/defect-types").status_code == 404  # none yet: geometry rules
        assert httpx.put(f"{url}/threshold", json={"value": 1e-6}, headers=admin).status_code == 200
        from fabricad.data.images import read_image

        def inspect(path) -> dict:
            answer = httpx.post(f"{server.url}/v1/inspect", content=png(read_image(path)),
                                headers={"content-type": "image/png"}, timeout=60)
            assert answer.status_code == 200, answer.text
            return answer.json()

        labelled = {}
        for kind in ("hole", "broken_yarn"):
            for path in sorted((typed_category / "test" / kind).glob("*.png"))[:6]:
                body = inspect(path)
                assert body["regions"][0]["type"] in ("spot", "line_along", "line_across")
                labelled[body["defect_id"]] = kind
        first = next(iter(labelled))
        assert httpx.post(f"{server.url}/v1/defects/{first}/ack", json={"label": "hole"}, headers=operator).status_code == 200
        refused = httpx.post(f"{url}/defect-types", headers=admin, timeout=60)
        assert refused.status_code == 400 and "at least two types" in refused.json()["detail"]
        for defect_id, kind in labelled.items():
            assert httpx.post(f"{server.url}/v1/defects/{defect_id}/ack", json={"label": kind}, headers=operator).status_code == 200
        assert httpx.post(f"{url}/defect-types", headers=operator).status_code == 403  # admins teach the model
        fitted = httpx.post(f"{url}/defect-types", headers=admin, timeout=60)
        assert fitted.status_code == 200, fitted.text
        assert fitted.json()["types"] == {"hole": 6, "broken_yarn": 6} and fitted.json()["from_service"] == 12
        assert (models / "plain-a" / TYPES_FILE).is_file()
        named = inspect(sorted((typed_category / "test" / "hole").glob("*.png"))[-1])["regions"]
        assert named and named[0]["type"] in ("hole", "broken_yarn", "unknown") and named[0]["type_confidence"] is not None
        again = httpx.post(f"{url}/defect-types", headers=admin, timeout=60).json()  # labels are not counted twice
        assert again["from_service"] == 12 and httpx.get(f"{url}/defect-types").json()["types"] == again["types"]
        audit = httpx.get(f"{server.url}/v1/audit", headers=admin).json()
        assert sum(e["action"] == "model.defect_types" for e in audit) == 2
    finally:
        server.stop()


def test_a_new_type_file_reaches_the_serving_engine_without_loading_the_model_again(tmp_path, models_dir, examples):
    from fabricad.service.registry import ModelRegistry

    shutil.copytree(models_dir / "plain-a", tmp_path / "plain-a")
    registry = ModelRegistry(tmp_path)
    _, engine = registry.engine("plain-a")
    assert engine.types is None
    fit_types(examples).save(tmp_path / "plain-a")
    registry.scan()
    entry, serving = registry.engine("plain-a")
    assert serving is engine and engine.types is not None and set(engine.types.classes) == set(TYPES)
    (tmp_path / "plain-a" / TYPES_FILE).write_text("{broken")
    registry.scan()  # refused with a log line; the classifier in use stays
    assert registry.engine("plain-a")[1] is engine and set(engine.types.classes) == set(TYPES)
    (tmp_path / "plain-a" / TYPES_FILE).unlink()
    registry.scan()
    assert registry.engine("plain-a")[1] is engine and engine.types is None
