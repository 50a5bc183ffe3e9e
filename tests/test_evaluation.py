"""`fabricad eval` end to end on a generated fabric: the files a person opens, with sane numbers."""

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from fabricad.cli import app
from fabricad.data.samples import Sample
from fabricad.evaluation import Predictions, compute_metrics

runner = CliRunner()
KEYS = {"image_auroc", "pixel_auroc", "aupro", "f1_max", "threshold_f1", "recall_at_1pct_fpr", "normal_count", "defective_count"}


@pytest.mark.slow
def test_eval_cli_writes_metrics_report_and_pictures(trained_run, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--model", str(trained_run), "--out", str(out), "-q",
                                 "--line", "--mm-per-px", "0.5", "--rolls", "3", "--roll-length-m", "2"])
    assert result.exit_code == 0, result.output
    assert "recall_at_1pct_fpr: " in result.output and "test_fpr_at_calibrated_threshold: " in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert KEYS <= set(metrics)
    assert metrics["normal_count"] == 4 and metrics["defective_count"] == 8
    assert metrics["image_auroc"] > 0.7  # the learning run separates its own synthetic defects
    assert 0.0 <= metrics["recall_at_1pct_fpr"] <= 1.0 and metrics["calibration_images"] >= 1
    for picture in ("roc.png", "pro.png", "histogram.png", "overlays.png"):
        assert (out / picture).stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "image_auroc" in report and "overlays.png" in report
    # --line: the operating points judged on rolls simulated from the test images, in both files
    line = metrics["line"]
    assert line["rolls"] == 3 and line["settings"]["mm_per_px"] == 0.5 and line["normal_scans"] == 4
    strict = line["strategies"]["ceiling: no false alarm anywhere"]
    assert strict["false_alarms_per_100_m"] == 0 and 0 <= strict["defect_recall"] <= 1
    assert "## On the line" in report and "| calibrated threshold |" in report and "| calibrated threshold |" in result.output


@pytest.mark.slow
def test_eval_recalibrates_when_an_inference_setting_changes_the_map(trained_run, tmp_path):
    """The 1 % FPR threshold comes from held-out normals scored with the map being evaluated,
    not from the scores saved at training (which came from the map of that time)."""
    from fabricad.evaluation import evaluate_checkpoint
    from fabricad.inference.metrics import threshold_for_fpr
    from fabricad.training.checkpoint import read_checkpoint

    saved = threshold_for_fpr(np.asarray(read_checkpoint(trained_run).score_stats["scores"]), 0.01)
    same = evaluate_checkpoint(trained_run, tmp_path / "same", progress=False)
    wider = evaluate_checkpoint(trained_run, tmp_path / "wider", progress=False, overrides=["model.blur_sigma=8"])
    assert same["threshold_1pct_fpr"] == pytest.approx(saved, rel=1e-3)  # the map of training: its scores
    assert wider["threshold_1pct_fpr"] < 0.9 * same["threshold_1pct_fpr"]  # a wider blur lowers every peak


def test_eval_needs_test_images(tmp_path, fabric_category):
    import shutil

    from fabricad.training import train
    from tests.conftest import quick_config

    only_train = tmp_path / "cat"
    shutil.copytree(fabric_category / "train", only_train / "train")
    train(quick_config(only_train), tmp_path / "run", progress=False)
    result = runner.invoke(app, ["eval", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "e")])
    assert result.exit_code != 0
    assert "no test images" in str(result.exception)


def test_tiled_predictions_get_full_image_auroc(tmp_path):
    samples = [Sample(tmp_path / f"{g}.png", label, crop=(x, 0, 4, 4), group=g)
               for g, labels in (("a", (0, 1)), ("b", (0, 0)), ("c", (0, 0))) for x, label in zip((0, 4), labels)]
    labels = np.array([s.label for s in samples])
    scores = np.array([0.1, 0.9, 0.2, 0.3, 0.4, 0.1])
    maps = np.zeros((6, 4, 4), np.float16)
    masks = np.zeros((6, 4, 4), bool)
    calibration = [0.1, 0.2, 0.5]
    metrics = compute_metrics(Predictions(samples, labels, scores, maps, masks, 0.0), calibration_scores=calibration)
    assert metrics["full_image_auroc"] == 1.0 and metrics["full_images"] == {"normal": 2, "defective": 1}
    # an image the dataset files as defective is a defective full image even where its mask marks
    # nothing (AITEX's 0106_010_03): its tiles stay normal, the image does not
    filed = [replace(s, image_label=1) if s.group == "b" else s for s in samples]
    relabelled = compute_metrics(Predictions(filed, labels, scores, maps, masks, 0.0), calibration_scores=calibration)
    assert relabelled["full_images"] == {"normal": 1, "defective": 2} and relabelled["defective_count"] == 1
    assert relabelled["full_image_auroc"] == 0.5  # normal c (0.4) outscores b (0.3), not a (0.9): 1 of 2 pairs
    # three normal scores: the 99 % quantile of a normal fit to them (0.75), above their maximum
    fitted = np.mean(calibration) + 2.3263 * np.std(calibration, ddof=1)
    assert metrics["threshold_1pct_fpr"] == pytest.approx(fitted, rel=1e-3)
    assert metrics["recall_at_1pct_fpr"] == 1.0 and metrics["test_fpr_at_calibrated_threshold"] == 0.0
    assert metrics["pixel_auroc"] is None  # no masks: undefined, not a made-up number


@pytest.mark.slow
def test_eval_warns_when_the_fabric_is_not_the_one_trained_on(trained_run, fabric_category, tmp_path, caplog):
    """A model evaluated on another fabric gives numbers that read like its own: say so. The same
    fabric named as a dataset root plus --category is no mix-up."""
    from fabricad.data.synthetic import generate_category
    from fabricad.evaluation import evaluate_checkpoint

    other = generate_category(tmp_path / "other", "twill", size=(128, 128), n_train=2, n_test_good=2, n_test_defect=2,
                              progress=False)
    with caplog.at_level("WARNING", logger="fabricad.evaluation.evaluate"):
        evaluate_checkpoint(trained_run, tmp_path / "same", fabric_category.parent, fabric_category.name, progress=False)
        assert not caplog.records
        evaluate_checkpoint(trained_run, tmp_path / "other-eval", other, progress=False)
    assert ["trained on 'plain'" in r.getMessage() and "'twill'" in r.getMessage() for r in caplog.records] == [True]


@pytest.mark.parametrize("whole_images", ["resize", "tile"])
def test_eval_scores_what_the_exported_bundle_serves(tmp_path, whole_images):
    """One scoring path: every score `fabricad eval` reports (scores.csv) is the score the
    exported bundle gives the same image on ONNX Runtime, and the threshold it ships is the one
    eval's held-out images give. Whole images resized (eval once scored the network-sized map,
    the service the map on the image's pixels) and scans cut into tiles with their neighbours as
    context and a bright strip beyond the fabric edge (export once calibrated without the edges)."""
    import csv

    import cv2

    from fabricad.data.images import read_image
    from fabricad.data.synthetic import generate_category
    from fabricad.evaluation import evaluate_checkpoint
    from fabricad.export.onnx_export import export_checkpoint
    from fabricad.inference.engine import InferenceEngine
    from fabricad.training import train
    from tests.conftest import quick_config

    size = (96, 96) if whole_images == "resize" else (64, 256)
    data = generate_category(tmp_path / "data", "twill", size=size, n_train=16, n_test_good=3, n_test_defect=3,
                             progress=False)
    if whole_images == "tile":
        for path in data.rglob("*.png"):
            if "ground_truth" not in path.parts:
                image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                image[:, :40] = 250  # the scanner's white beyond the fabric's edge
                cv2.imwrite(str(path), image)
    train(quick_config(data, **{"data.whole_images": whole_images, "data.holdout_fraction": "0.25"}),
          tmp_path / "run", progress=False)
    bundle = export_checkpoint(tmp_path / "run", tmp_path / "bundle", progress=False)
    metrics = evaluate_checkpoint(tmp_path / "run", tmp_path / "eval", progress=False)

    evaluated: dict[str, float] = {}
    with (tmp_path / "eval" / "scores.csv").open() as f:
        for row in csv.DictReader(f):  # an image's score is its tiles' maximum, as served
            evaluated[row["image"]] = max(evaluated.get(row["image"], 0.0), float(row["score"]))
    assert len(evaluated) == 6
    engine = InferenceEngine.load(bundle)
    served = {image: engine.inspect(read_image(image)).score for image in evaluated}
    for image, score in evaluated.items():
        assert served[image] == pytest.approx(score, rel=2e-5, abs=1e-6), image
    assert engine.threshold.value == pytest.approx(metrics["threshold_1pct_fpr"], rel=2e-5)
