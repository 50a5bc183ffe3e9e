"""Every maintained benchmark (benchmarks/) runs end to end on tiny inputs, so the scripts behind
BENCHMARKS.md keep working as the code moves. Figures are not checked: these runs are seconds
long on a shared CI machine; what is checked is that each script gets to its table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.plc import MOSQUITTO

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, timeout: int = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_inference_speed(trained_run, fabric_category):
    out = bench("benchmarks.inference_speed", "--model", str(trained_run), "--data", str(fabric_category),
                "--threads", "1", "--seconds", "0.2", "--repeats", "1")
    rows = [line for line in out.splitlines() if line.startswith(("| ONNX Runtime", "| PyTorch", "| OpenVINO"))]
    assert [r.split("|")[1].strip() for r in rows] == ["PyTorch eager", "ONNX Runtime fp32", "ONNX Runtime INT8",
                                                       "OpenVINO fp32", "OpenVINO INT8", "OpenVINO NNCF INT8"]
    assert all(float(r.split("|")[7]) > 0 for r in rows)  # Mpx/s per core


def test_int8_calibration(trained_run, tmp_path):
    runs = tmp_path / "runs"
    (runs / "00").mkdir(parents=True)
    (runs / "00" / "rd").symlink_to(trained_run)
    out = bench("benchmarks.int8_calibration", "--runs", str(runs), "--threads", "1", "--seconds", "0.2")
    assert "| 00 |" in out and "| **mean** |" in out


def test_gpu_speed_says_what_it_could_not_measure(trained_run, fabric_category):
    out = bench("benchmarks.gpu_speed", "--model", str(trained_run), "--data", str(fabric_category), "--seconds", "0.1")
    assert "PyTorch CPU fp32" in out and "ONNX Runtime CPU fp32" in out
    if "no CUDA device" in out:  # each GPU backend says why it was not measured, instead of failing
        assert "PyTorch CUDA fp32 unavailable: " in out and "ONNX Runtime TensorRT fp16 unavailable: " in out


def test_service_load_and_paired(trained_models, tmp_path):
    image = tmp_path / "tile.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    bundle = str(trained_models / "plain")
    out = bench("benchmarks.service_load", "--bundle", bundle, "--image", str(image), "--seconds", "0.3", "--rounds", "1")
    assert "POST /v1/inspect" in out and "bare engine" in out
    out = bench("benchmarks.service_paired", "--bundle", bundle, "--image", str(image), "--cycles", "3", "--block", "1")
    assert "overhead" in out


def test_scaleout(trained_models, tmp_path):
    """The measuring and the table; the in-process row alone, since starting Ray Serve costs a
    minute here and tests/test_scaleout.py already runs the service on `fabricad engine ray`, as
    the benchmark's Ray rows do."""
    image = tmp_path / "tile.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    out = bench("benchmarks.scaleout", "--bundle", str(trained_models / "plain"), "--image", str(image),
                "--cameras", "1", "--clients", "1", "--seconds", "0.5", "--replicas", timeout=600)
    row = next(line for line in out.splitlines() if line.startswith("| in-process"))
    assert float(row.split("|")[2]) > 0 and row.rstrip().endswith("| 1.00 | n/a |")


def test_mixed_sizes(tmp_path):
    out = bench("benchmarks.mixed_sizes", "--out", str(tmp_path / "mixed"), "--fabrics", "felt", "--train-images", "4",
                "--max-steps", "2", "--variants", "now", "--defects", "large", "--sets", "model.blur_sigma=8", timeout=600)
    assert "| felt | now" in out and "| mean | now (the default: premises checked), model.blur_sigma=8 |" in out
    assert {p.name for p in (tmp_path / "mixed" / "data" / "felt" / "test").iterdir()} == {"good", "uneven", "other_density"}


def test_aitex_tabulates_finished_runs(tmp_path):
    """The AITEX table from runs' results (training six fabrics is the benchmark itself: 96 min)."""
    row = {"image_auroc": 0.9, "pixel_auroc": 0.95, "aupro": 0.85, "full_image_auroc": 0.95, "train_seconds": 840,
           "seconds_per_image": 0.06, "recall_at_1pct_fpr": 0.76, "test_fpr_at_calibrated_threshold": 0.07}
    (tmp_path / "02").mkdir()
    (tmp_path / "02" / "results.json").write_text(json.dumps({"rd": row, "patchcore": {**row, "recall_at_1pct_fpr": None}}))
    out = bench("benchmarks.aitex", "--out", str(tmp_path), "--fabrics", "02", "--tabulate")
    assert "| 02 | rd | 0.900 | 0.950 | 0.850 | 0.950 |" in out and "| **mean** | patchcore |" in out


@pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto (apt-get install mosquitto)")
def test_line_latency(trained_models, tmp_path):
    image = tmp_path / "tile.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    out = bench("benchmarks.line_latency", "--bundle", str(trained_models / "plain"), "--image", str(image),
                "--cameras", "2", "--fps", "10", "--seconds", "2", "--defect-every", "2")
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| camera →") or line.startswith("| REST")]
    assert rows[:3] == ["camera → MQTT", "camera → OPC UA", "camera → Modbus TCP"] and rows[3].startswith("REST")


def test_line_scan(trained_models, tmp_path):
    image = tmp_path / "fabric.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    out = bench("benchmarks.line_scan", "--bundle", str(trained_models / "plain"), "--image", str(image),
                "--widths", "512", "--rates", "200", "--seconds", "1")
    assert "| 512 | 200 |" in out and "GigE Vision link" in out


def test_defect_types_on_aitex(tmp_path):
    aitex = ROOT.parent / "shared" / "data" / "aitex"
    if not aitex.is_dir():
        pytest.skip("AITEX is not at ../shared/data/aitex")
    out = bench("benchmarks.defect_types", "--data", str(aitex), "--out", str(tmp_path))
    assert "| **all: accuracy / macro-F1** |" in out and (tmp_path / "confusion.png").stat().st_size > 0
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert len(figures["types"]) >= 5 and figures["classifier"]["macro_f1"] > figures["geometry_rules"]["macro_f1"]


def test_feedback_loop(tmp_path):
    out = bench("benchmarks.feedback_loop", "--out", str(tmp_path), "--fabrics", "plain", "--size", "64", "--train", "8",
                "--steps", "4", "--labelled", "3", "--unseen", "2", "--retrain-steps", "4", "--set",
                "model.teacher.name=resnet18", "model.teacher.weights=random", "model.width=64", timeout=600)
    row = next(line for line in out.splitlines() if line.startswith("| plain | 3 |"))
    assert row.split("|")[8].strip() in ("better", "not_worse", "worse")


def test_persistence(tmp_path):
    out = bench("benchmarks.persistence", "--out", str(tmp_path), "--fabrics", "plain", "--size", "64", "--train", "8",
                "--steps", "4", "--length-m", "2", "--defects", "4", "--lint", "0.5", "--set",
                "model.teacher.name=resnet18", "model.teacher.weights=random", "model.width=64", timeout=600)
    rows = {int(r.split("|")[2]): r.split("|") for r in out.splitlines() if r.startswith("| plain |")}
    assert sorted(rows) == [1, 2]
    for k in (1, 2):
        assert 0 <= int(rows[k][5]) <= int(rows[k][4])  # alarms on lint are among the false alarms
        found, planted = rows[k][6].split("(")[0].split("/")
        assert int(planted) == 4 and 0 <= int(found) <= 4


def test_cascade(trained_run, tmp_path):
    runs = tmp_path / "runs"
    (runs / "00").mkdir(parents=True)
    (runs / "00" / "rd").symlink_to(trained_run)
    out = bench("benchmarks.cascade", "--runs", str(runs), "--fabrics", "00", "--pass", "0.5", "--seconds", "0.2",
                "--threads", "1")
    assert "| 00 | full model |" in out and "| 00 | cascade, 50% of held-out normals pass |" in out


def test_line_feedback(trained_run, tmp_path):
    """The retrain on labelled false alarms, judged by the line benchmark on scans it did not see:
    here on the small synthetic model, whose whole images are frames of their own."""
    runs = tmp_path / "runs"
    (runs / "00").mkdir(parents=True)
    (runs / "00" / "rd").symlink_to(trained_run)
    out = bench("benchmarks.line_feedback", "--runs", str(runs), "--fabrics", "00", "--out", str(tmp_path / "out"),
                "--steps", "2", "--rolls", "2", "--roll-length-m", "1", "--mm-per-px", "1", "--teach-in-frames", "1",
                timeout=600)
    rows = {r.split("|")[1].strip(): r.split("|")[2] for r in out.splitlines() if r.startswith("| ") and "→" in r}
    if rows:  # the model raised false alarms on half A: both models judged on the rest, side by side
        assert {"calibrated threshold", "teach-in threshold"} <= set(rows)
        assert "retrained in" in out and "judged on" in out
    else:
        assert "no false alarm on half A to label" in out
    assert json.loads((tmp_path / "out" / "results.json").read_text())["00"]["note"] in out


def test_line_feedback_labels_tiles_away_from_the_true_defects(tmp_path):
    """The frames the benchmark labels false alarms: a square tile (the scan's height) around each
    region above the good scans, none of them holding a true defect."""
    from benchmarks.line_feedback import false_alarm_tiles
    from fabricad.evaluation.line import Frame, TruthDefect

    scan = tmp_path / "scan.png"
    cv2.imwrite(str(scan), np.full((32, 256, 3), 90, np.uint8))
    calm = np.full((32, 256), 0.1, np.float32)
    good = Frame("good", calm.copy(), [], True, source=scan)
    bad = Frame("bad", calm.copy(), [TruthDefect((20, 5, 6, 6))], False, source=scan)
    bad.anomaly_map[5:11, 20:26] = 0.9  # the true defect
    bad.anomaly_map[10:14, 200:204] = 0.8  # a false alarm far from it
    bad.anomaly_map[10:14, 40:44] = 0.8  # one whose tile would hold the defect
    tiles = false_alarm_tiles([good, bad], [1], tmp_path / "tiles", tolerance_px=2, most=10)
    assert [t.name for t in tiles] == ["scan_x186.png"]
    assert cv2.imread(str(tiles[0])).shape == (32, 32, 3)
