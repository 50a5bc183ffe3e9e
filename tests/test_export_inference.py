"""Export parity with a real ONNX Runtime session, bundle integrity, the engine and `predict`."""

import csv
import json

import cv2
import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from fabricad.cli import app
from fabricad.data import load_dataset
from fabricad.data.holdout import holdout_split
from fabricad.data.images import resize
from fabricad.errors import CheckpointError, ConfigError, FabricadError
from fabricad.export.onnx_export import export_bundle
from fabricad.inference.bundle import read_bundle
from fabricad.inference.engine import InferenceEngine, blend_window
from fabricad.inference.thresholds import normalise
from fabricad.training import load_model, read_checkpoint, train
from fabricad.training.torch_backend import TorchBackend, load_engine
from tests.conftest import quick_config

ort = pytest.importorskip("onnxruntime")

VARIANTS = {
    "rd-resnet18": {},
    "dbfad-resnet18": {"model.name": "dbfad", "model.skips": "true"},
    "rd-lite0": {"model.teacher.name": "tf_efficientnet_lite0", "model.teacher.weights": "packaged"},
    "dbfad-lite0": {"model.name": "dbfad", "model.teacher.name": "tf_efficientnet_lite0", "model.teacher.weights": "packaged",
                    "model.pad": "16", "model.standardize": "true"},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fabric_category):
    """name -> (checkpoint dir, fp32 bundle dir) for both models and two teachers."""
    runs = {}
    for name, overrides in VARIANTS.items():
        root = tmp_path_factory.mktemp(name)
        config = quick_config(fabric_category, **overrides)
        train(config, root / "run", progress=False)
        model, ckpt = load_model(root / "run")
        export_bundle(model, ckpt, root / "bundle", progress=False)
        runs[name] = (root / "run", root / "bundle")
    return runs


@pytest.mark.parametrize("name", list(VARIANTS))
def test_fp32_parity_on_real_images(exported, fabric_category, name):
    run, bundle = exported[name]
    model, ckpt = load_model(run)
    size = ckpt.config.data.image_size
    samples = load_dataset(fabric_category).test[:6]
    images = np.stack([resize(s.load(), size) for s in samples])
    import torch

    with torch.no_grad():
        expected_map, expected_score = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    meta, path = read_bundle(bundle)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual_map, actual_score = session.run(["anomaly_map", "score"], {"image": images})  # dynamic batch of 6
    assert np.abs(actual_map - expected_map.numpy()).max() < 1e-4
    assert np.abs(actual_score - expected_score.numpy()).max() < 1e-4
    assert meta.input.height == size[0] and meta.teacher == ckpt.teacher
    assert meta.threshold.method == "normal-quantile" and meta.threshold.target_fpr == 0.01
    # EfficientNet's TF-style 'same' padding is frozen to constants for the bundle's input size:
    # no shape arithmetic left in the teacher (it kept ONNX Runtime out of its fast layout).
    teacher_ops = {n.op_type for n in onnx.load(str(path)).graph.node if n.name.startswith("/model/teacher/")}
    assert not teacher_ops & {"Shape", "Ceil", "Gather"}, teacher_ops


@pytest.mark.slow
def test_int8_bundle_is_smaller_and_keeps_detection_quality(trained_run, fabric_category, tmp_path):
    """INT8 on the really trained model: a quarter of the size, and defects still rank first."""
    from fabricad.inference.metrics import auroc

    model, ckpt = load_model(trained_run)
    split = load_dataset(fabric_category)
    train_samples, holdout = holdout_split(split.train, ckpt.config)
    export_bundle(model, ckpt, tmp_path / "fp32", progress=False)
    export_bundle(model, ckpt, tmp_path / "int8", precision="int8", calibration_samples=train_samples,
                  holdout_samples=holdout, progress=False)
    meta8, path8 = read_bundle(tmp_path / "int8")
    _, path32 = read_bundle(tmp_path / "fp32")
    assert meta8.precision == "int8"
    assert path8.stat().st_size < 0.5 * path32.stat().st_size
    assert meta8.threshold.calibration_count == len(holdout)  # recalibrated on its own scores
    labels = np.array([s.label for s in split.test])
    images = np.stack([resize(s.load(), ckpt.config.data.image_size) for s in split.test])
    s32 = ort.InferenceSession(str(path32)).run(["score"], {"image": images})[0]
    s8 = ort.InferenceSession(str(path8)).run(["score"], {"image": images})[0]
    assert np.corrcoef(s32, s8)[0, 1] > 0.9
    assert auroc(labels, s8) >= auroc(labels, s32) - 0.05


def test_tampered_bundle_is_refused(exported, tmp_path):
    import shutil

    _, bundle = exported["rd-resnet18"]
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    with (copy / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        read_bundle(copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["model_file"] = "../../etc/passwd"  # a name only is honoured
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="passwd"):
        read_bundle(copy)


class EchoBackend:
    """Returns each crop's red channel / 255 as its map: blending must reproduce the image."""

    name = "echo"
    input_size = (32, 48)

    def __call__(self, images):
        maps = images[..., 0].astype(np.float32) / 255
        return maps, maps.reshape(len(images), -1).max(axis=1)


def _echo_engine(exported, mode="tile"):
    _, bundle = exported["rd-resnet18"]
    meta, _ = read_bundle(bundle)
    return InferenceEngine(EchoBackend(), meta, batch_size=5, mode=mode)


@pytest.mark.parametrize("shape", [(32, 48), (32, 200), (70, 130), (20, 30)])
def test_tiling_is_seamless_and_covers_the_image(exported, shape):
    engine = _echo_engine(exported)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    result = engine.inspect(image)
    assert result.anomaly_map.shape == shape
    np.testing.assert_allclose(result.anomaly_map, image[..., 0] / 255, atol=1e-5)
    assert result.score == pytest.approx(image[..., 0].max() / 255, abs=1e-5)


def test_engine_scores_a_sheared_scan_aligned_and_maps_it_back(exported):
    from fabricad.data.alignment import TextureReference
    from tests.test_alignment import twill

    run, bundle = exported["rd-resnet18"]
    meta, _ = read_bundle(bundle)
    assert meta.texture and meta.texture == read_checkpoint(run).texture  # training saved it, export carried it
    reference = TextureReference.from_images([twill(seed) for seed in range(3)])
    twill_meta = meta.model_copy(update={"texture": reference.encode()})
    scan = twill(20, k=0.3)
    result = InferenceEngine(EchoBackend(), twill_meta, batch_size=256, mode="tile").inspect(scan)
    assert result.alignment.shear == pytest.approx(-0.3, abs=0.03) and not result.alignment.mirror
    assert result.as_dict()["alignment"]["shear"] == result.alignment.shear
    inside = np.s_[:, 150:-150]  # the scan's ends take reflected pixels
    assert np.abs(result.anomaly_map - scan[..., 0] / 255)[inside].mean() < 0.02  # back on the scan's pixels
    plain = InferenceEngine(EchoBackend(), twill_meta, batch_size=256, mode="tile", align=False).inspect(scan)
    assert plain.as_dict()["alignment"] is None


def test_engine_blanks_the_machine_bed_of_a_scan_when_the_bundle_says_so(exported):
    """A bundle with `fabric_edges` gives the bed beyond a scan's fabric edge a zero map and
    scores what is left; one without (bundles exported before the setting) scores it all."""
    from fabricad.data.fabric_edges import background_columns
    from tests.test_fabric_edges import BED, HEIGHT, bed, fabric

    _, bundle = exported["rd-resnet18"]
    meta, _ = read_bundle(bundle)
    assert meta.model["fabric_edges"] is True  # the default, carried into the bundle
    scan = fabric(1)
    scan[:, :BED] = bed(HEIGHT, BED, np.random.default_rng(0), level=250)  # brighter than the fabric
    edges = InferenceEngine(EchoBackend(), meta, batch_size=64, mode="tile").inspect(scan)
    older = {k: v for k, v in meta.model.items() if k != "fabric_edges"}
    plain = InferenceEngine(EchoBackend(), meta.model_copy(update={"model": older}), batch_size=64, mode="tile").inspect(scan)
    background = background_columns(scan)
    assert background[: BED - 4].all() and not background[BED + 4 :].any()
    assert edges.anomaly_map[:, background].max() == 0 and edges.fabric_in_view
    np.testing.assert_allclose(edges.anomaly_map[:, ~background], plain.anomaly_map[:, ~background])
    assert edges.score == pytest.approx(plain.anomaly_map[:, ~background].max(), abs=1e-6)
    assert plain.anomaly_map[:, background].min() > 0.5  # the bed was the brightest of the scan before


def test_a_selvedge_band_beside_the_fabric_edge_is_left_uninspected(exported):
    """An operating point's `selvedge_mm`: a bright mark just inside the fabric's edge alarms
    without it and not with it; one farther in alarms either way; a frame whose edge is not in
    view (no bed) is inspected to its border."""
    from fabricad.inference.operating_point import OperatingPoint
    from tests.test_fabric_edges import BED, HEIGHT, bed, fabric

    _, bundle = exported["rd-resnet18"]
    meta, _ = read_bundle(bundle)
    engine = InferenceEngine(EchoBackend(), meta, batch_size=64, mode="tile", align=False)
    scan = fabric(1)
    scan[:, :BED] = bed(HEIGHT, BED, np.random.default_rng(0), level=40)  # darker than the fabric
    whole = fabric(2)  # the fabric fills the frame: no edge in view
    engine.set_threshold(max(float(scan[..., 0].max()), float(whole[..., 0].max())) / 255 + 0.01)
    scan[20:26, BED + 6:BED + 12] = 255  # 6-11 px inside the edge: 3-6 mm at 0.5 mm/px
    scan[40:46, BED + 100:BED + 106] = 255  # 50 mm inside
    engine.use_operating_point(OperatingPoint(mm_per_px=0.5))
    assert sorted(r.x for r in engine.inspect(scan).regions) == [BED + 6, BED + 100]
    engine.use_operating_point(OperatingPoint(mm_per_px=0.5, selvedge_mm=10))
    result = engine.inspect(scan)
    assert [r.x for r in result.regions] == [BED + 100] and result.is_defect
    assert result.anomaly_map[:, BED + 4:BED + 16].max() == 0 and result.anomaly_map[:, BED + 30:].max() > 0
    whole[20:26, 2:8] = 255  # nothing left out where no edge is in view
    assert [r.x for r in engine.inspect(whole).regions] == [2]
    # The band judged against a threshold of its own: a hole in the selvedge still alarms, a
    # bright mark of the selvedge's own (above the fabric's threshold, below the band's) does not.
    scan[50:58, BED + 2:BED + 8] = 230
    engine.use_operating_point(OperatingPoint(mm_per_px=0.5))
    assert sorted(r.x for r in engine.inspect(scan).regions) == [BED + 2, BED + 6, BED + 100]
    engine.use_operating_point(OperatingPoint(mm_per_px=0.5, selvedge_mm=10, selvedge_threshold=0.95))
    result = engine.inspect(scan)
    assert sorted(r.x for r in result.regions) == [BED + 6, BED + 100]
    assert result.anomaly_map[50:58, BED + 2:BED + 8].min() > 0.85  # inspected, not zeroed


def test_blend_window_is_positive():
    assert (blend_window(8, 8) > 0).all()


def test_input_layouts(exported):
    engine = _echo_engine(exported, mode="resize")
    gray = np.full((32, 48), 200, np.uint8)
    rgba = np.dstack([np.full((32, 48, 3), 200, np.uint8), np.zeros((32, 48), np.uint8)])
    deep = np.full((32, 48), 200 * 257, np.uint16)
    scores = [engine.inspect(img).score for img in (gray, rgba, deep)]
    assert scores == pytest.approx([200 / 255] * 3)


def test_verdict_regions_and_runtime_threshold(exported):
    engine = _echo_engine(exported)
    image = np.zeros((32, 96, 3), np.uint8)
    image[5:9, 60:70, 0] = 250  # one bright blob in the second tile
    engine.set_threshold(0.5)
    result = engine.inspect(image)
    assert result.is_defect and len(result.regions) == 1
    region = result.regions[0]
    assert (region.x, region.y, region.width, region.height, region.area) == (60, 5, 10, 4, 40)
    assert result.normalized_score > 0.5
    engine.set_threshold(0.99)
    calm = engine.inspect(image)
    assert not calm.is_defect and calm.regions == [] and calm.normalized_score < 0.5
    assert normalise(0.7, 0.7, 0.1) == 0.5
    recalibrated = engine.set_threshold(target_fpr=0.5)
    assert recalibrated.method == "normal-quantile" and recalibrated.target_fpr == 0.5


def test_torch_and_onnx_engines_agree(exported, fabric_category):
    run, bundle = exported["dbfad-lite0"]
    image = load_dataset(fabric_category).test[-1].load()
    a = load_engine(run).inspect(image)
    b = InferenceEngine.load(bundle).inspect(image)
    assert a.score == pytest.approx(b.score, abs=1e-4)
    assert a.is_defect == b.is_defect


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here")
def test_requested_gpu_provider_is_never_silently_cpu(exported):
    _, bundle = exported["rd-resnet18"]
    with pytest.raises(FabricadError, match="CUDAExecutionProvider not available"):
        InferenceEngine.load(bundle, providers=["cuda"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_pytorch_fp16_is_refused_without_cuda(exported):
    run, _ = exported["rd-resnet18"]
    with pytest.raises(FabricadError, match="fp16 inference needs a CUDA device"):
        TorchBackend.from_checkpoint(run, "cpu", precision="fp16")
    with pytest.raises(FabricadError, match="fp32 or fp16"):
        TorchBackend.from_checkpoint(run, "cpu", precision="int8")
    assert TorchBackend.from_checkpoint(run, "cpu").name == "pytorch[cpu]"


runner = CliRunner()


def test_info_reads_a_bundle_and_refuses_a_changed_graph(exported, tmp_path):
    """On the line PC there is no checkpoint, only the bundle: `info` shows what it is and
    whether its graph is the one exported."""
    import shutil

    import yaml

    _, bundle = exported["rd-resnet18"]
    copy = tmp_path / "line-model"
    shutil.copytree(bundle, copy)
    result = runner.invoke(app, ["info", str(copy)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["name"] == json.loads((copy / "model.json").read_text())["name"]
    assert shown["graph"].endswith("sha256 verified") and shown["threshold"]["value"] > 0
    assert runner.invoke(app, ["info", str(copy / "model.json")]).output == result.output
    graph = copy / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-16])
    changed = runner.invoke(app, ["info", str(copy)])
    assert changed.exit_code != 0 and "does not match the sha256" in str(changed.exception) + changed.output


def test_predict_cli_keeps_going_past_bad_files(exported, fabric_category, tmp_path):
    _, bundle = exported["rd-resnet18"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for sample in load_dataset(fabric_category).test[:3]:
        cv2.imwrite(str(inputs / sample.path.name), cv2.imread(str(sample.path)))
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cv2.imwrite(str(inputs / "speck.png"), np.full((5, 5, 3), 128, np.uint8))  # a camera ROI set far too small
    cv2.imwrite(str(inputs / "table.png"), np.full((128, 128, 3), 255, np.uint8))  # a web break: the bare table
    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (128, 128))
    frame = cv2.imread(str(load_dataset(fabric_category).test[0].path))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(inputs), str(video), "--model", str(bundle), "--out", str(out), "--every", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "1 with no fabric in view" in result.output and "2 unreadable" in result.output
    data = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in data["results"]]
    assert len([n for n in names if n.startswith("line_f")]) == 2
    assert len(names) == 6 and len(data["failures"]) == 2
    assert "corrupt.png" in data["failures"][0] and "speck.png: 5x5 is too small" in data["failures"][1]
    assert all((out / r["overlay"]).is_file() for r in data["results"])
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6 and [r["name"] for r in rows if r["fabric_in_view"] == "False"] == ["table"]
    assert {r["verdict"] for r in data["results"]} <= {"OK", "DEFECT"}


def test_predict_cli_reports_alignment_and_can_turn_it_off(exported, tmp_path):
    from fabricad.data.alignment import shear
    from fabricad.data.synthetic import FABRICS, render_fabric

    _, bundle = exported["rd-resnet18"]  # trained on plain weave
    image = tmp_path / "drifted.png"
    sheared = shear(render_fabric(FABRICS["plain"], 128, 512, np.random.default_rng(5)), 0.3)
    cv2.imwrite(str(image), cv2.cvtColor(sheared, cv2.COLOR_RGB2BGR))
    column = {}
    for flag in ("--align", "--no-align"):
        result = runner.invoke(app, ["predict", str(image), "--model", str(bundle), "--out", str(tmp_path / flag), flag, "-q"])
        assert result.exit_code == 0, result.output
        column[flag] = next(csv.DictReader((tmp_path / flag / "results.csv").open()))["alignment"]
    assert column["--align"].startswith("sheared -0.") and float(column["--align"].split()[-1]) == pytest.approx(-0.3, abs=0.03)
    assert column["--no-align"] == ""


def test_export_cli_and_tensorrt_message(exported, tmp_path):
    run, _ = exported["rd-resnet18"]
    result = runner.invoke(app, ["export", "--model", str(run), "--out", str(tmp_path / "b"), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "model.onnx").is_file() and (tmp_path / "b" / "model.json").is_file()
    from fabricad.export.tensorrt import tensorrt_route

    if tensorrt_route() is None:
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "fabricad", "export", "--model", str(run), "--format", "tensorrt",
                               "--out", str(tmp_path / "t")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "TensorRT is not available" in proc.stderr
        assert not (tmp_path / "t").exists()  # nothing half-built that could pass for an engine


def test_fabric_roi_zeroes_background_in_pytorch_and_onnx(exported, tmp_path):
    """The fabric ROI: flat saturated background and a margin around it score zero, the
    fabric keeps its map, and the exported graph does the same."""
    import torch

    from fabricad.models.base import background_mask

    run, _ = exported["rd-resnet18"]
    model, ckpt = load_model(run, ["model.fabric_roi=true", "model.roi_margin=8"])
    assert ckpt.config.model.fabric_roi and model.config.roi_margin == 8
    h, w = ckpt.config.data.image_size
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
    image[:, : w // 2] = 255  # the scanner's white beyond the fabric edge
    x = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float() / 255
    mask = background_mask(x, margin=8)[0, 0].numpy()
    assert mask[:, : w // 2 - 5].min() == 1 and mask[:, w // 2 + 9:].max() == 0  # white + 8 px margin
    assert mask[:, w // 2 : w // 2 + 8].min() == 1
    with torch.no_grad():
        masked, score = model(x)
    assert masked[0, 0, :, : w // 2 + 8].abs().max() == 0 and masked[0, 0, :, w // 2 + 9:].max() > 0
    assert float(score[0]) == pytest.approx(float(masked.max()))
    textured = rng.integers(60, 200, (1, 3, h, w), dtype=np.uint8)
    with torch.no_grad():
        plain_model, _ = load_model(run, ["model.fabric_roi=false"])
        a, _ = model(torch.from_numpy(textured).float() / 255)
        b, _ = plain_model(torch.from_numpy(textured).float() / 255)
    assert torch.allclose(a, b)  # all fabric: nothing changes
    bundle = export_bundle(model, ckpt, tmp_path / "roi", progress=False)
    meta, path = read_bundle(bundle)
    assert meta.model["fabric_roi"] is True
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_map, _ = session.run(["anomaly_map", "score"], {"image": image[None]})
    assert np.abs(onnx_map - masked.numpy()).max() < 1e-4
    with pytest.raises(ConfigError, match="can change after training"):
        load_model(run, ["model.width=32"])


def test_fabric_roi_keeps_a_backlit_hole_and_blanks_what_lies_beyond_the_edge(exported):
    """On a backlit inspection table a hole shows the lamp: flat, saturated white, like a
    scanner's background (the generator's `white-backlit` fabric draws it so). Only background
    that crosses the whole image counts, since the fabric edge runs along the roll, so the hole
    keeps its map; a strip beyond the edge goes, with a margin measured on the fabric (a tile
    magnified 2x for the network, `roi_scale`, needs it twice as wide)."""
    from fabricad.data.synthetic import FABRICS, add_defect, render_fabric

    spec, rng = FABRICS["white-backlit"], np.random.default_rng(0)
    holed, hole = add_defect(render_fabric(spec, 256, 256, rng), "hole", rng, spec)
    assert hole.sum() > 0 and (holed[hole] == 255).all()
    run, _ = exported["rd-resnet18"]
    model, ckpt = load_model(run, ["model.roi_margin=4"])  # the ROI itself is on by default
    plain, _ = load_model(run, ["model.fabric_roi=false"])
    assert ckpt.config.model.fabric_roi and not plain.config.fabric_roi
    h, w = ckpt.config.data.image_size
    fabric = render_fabric(spec, h, w, rng)
    cv2.circle(fabric, (w - 20, h // 2), 9, (255, 255, 255), -1)  # twice the flatness window

    def maps(image):
        x = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            return model(x)[0][0, 0], plain(x)[0][0, 0]

    with_roi, without = maps(fabric)
    assert torch.equal(with_roi, without) and without[h // 2, w - 20] > 0
    fabric[:, :16] = 255  # the scanner's white beyond the fabric edge, top to bottom
    for scale, margin in ((1.0, 4), (2.0, 8)):
        model.roi_scale = scale
        with_roi, without = maps(fabric)
        assert with_roi[:, : 16 + margin].abs().max() == 0 and without[:, : 16 + margin].max() > 0
        assert torch.equal(with_roi[:, 16 + margin :], without[:, 16 + margin :])


def test_engine_tells_a_frame_without_fabric(exported, fabric_category, tmp_path):
    """With the fabric ROI a frame of nothing but background scores exactly 0: the engine says no
    fabric was in view instead of letting OK pass for good cloth. A bundle without the ROI (off by
    hand, or by the premise check for fabrics trained without a background) says the same of a
    frame that is background throughout, but scores a frame with fabric in it whole, its strip of
    background included."""
    run, bundle = exported["rd-resnet18"]
    engine = InferenceEngine.load(bundle)
    assert engine.meta.model["fabric_roi"] is True  # the default
    white = np.full((64, 300, 3), 255, np.uint8)  # wider than a tile: every tile is background
    result = engine.inspect(white)
    assert not result.fabric_in_view and result.score == 0 and result.as_dict()["fabric_in_view"] is False
    edge = load_dataset(fabric_category).test[0].load().copy()
    edge[:, :20] = 255
    assert engine.inspect(edge).fabric_in_view
    model, ckpt = load_model(run, ["model.fabric_roi=false"])
    plain = InferenceEngine.load(export_bundle(model, ckpt, tmp_path / "plain", progress=False))
    unmasked = plain.inspect(white)
    assert not unmasked.fabric_in_view and unmasked.score == 0
    scored = plain.inspect(edge)
    assert scored.fabric_in_view and scored.anomaly_map[:, :20].max() > 0  # the strip is not blanked


RUNTIME_ONLY = """
import importlib.abc, sys
from fabricad.errors import EXTRA_OF_MODULE

class NotInstalled(importlib.abc.MetaPathFinder):
    # What a `pip install fabricad` without the [train] extra looks like to Python.
    def find_spec(self, name, path=None, target=None):
        if EXTRA_OF_MODULE.get(name.split(".")[0]) == "train":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
"""


def _run_python(code: str):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


def test_a_runtime_install_without_the_training_extra_serves_bundles(exported, tmp_path):
    """`pip install fabricad` (no [train]: no torch, timm, scikit-learn, matplotlib, onnx ...)
    must run everything a line PC does with a bundle: the service app, the engine, `fabricad
    predict`; training must say which extra to install instead of a traceback."""
    import shutil

    _, bundle = exported["rd-resnet18"]
    shutil.copytree(bundle, tmp_path / "models" / "fabric")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((64, 300), 128, np.uint8))
    serve = RUNTIME_ONLY + (
        "import numpy as np\n"
        "from fastapi.testclient import TestClient\n"
        "from fabricad.service.app import create_app\n"
        "from fabricad.service.settings import ServiceSettings\n"
        "from fabricad.inference.engine import InferenceEngine\n"
        f"engine = InferenceEngine.load({str(bundle)!r})\n"
        "assert engine.inspect(np.full((64, 300, 3), 128, np.uint8)).anomaly_map.shape == (64, 300)\n"
        f"settings = ServiceSettings(models_dir={str(tmp_path / 'models')!r}, database_url='sqlite:///{tmp_path / 'd.db'}',"
        f" image_store={str(tmp_path / 'img')!r})\n"
        "with TestClient(create_app(settings)) as client:\n"
        f"    answer = client.post('/v1/inspect', content=open({str(image)!r}, 'rb').read(), headers={{'content-type': 'image/png'}})\n"
        "    assert answer.status_code == 200, answer.text\n"
        "    print(answer.json()['verdict'])\n"
    )
    done = _run_python(serve)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() in ("OK", "DEFECT"), done.stdout

    def cli(*args: str):
        return _run_python(RUNTIME_ONLY + f"import sys\nsys.argv = ['fabricad', *{list(args)!r}]\n"
                           "from fabricad.cli import main\nmain()\n")

    predicted = cli("predict", "--model", str(bundle), "--out", str(tmp_path / "out"), str(image))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert (tmp_path / "out" / "results.json").is_file()
    shown = cli("info", str(bundle))
    assert shown.returncode == 0 and "sha256 verified" in shown.stdout, shown.stderr[-3000:]
    trained = cli("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert trained.returncode == 2, trained.stderr[-3000:]
    assert "pip install 'fabricad[train]'" in trained.stderr and "Traceback" not in trained.stderr
    demo = cli("demo", "--no-serve", "--workdir", str(tmp_path / "demo"))
    assert demo.returncode == 2 and "fabricad[train]" in demo.stderr, demo.stderr[-3000:]
    assert not (tmp_path / "demo").exists()  # said so before generating anything


def test_the_training_extra_holds_exactly_the_blocked_modules():
    """pyproject's core dependencies carry none of the [train] extra's packages, and the CLI's
    hint (`EXTRA_OF_MODULE`) knows every package of that extra."""
    import re
    import tomllib
    from pathlib import Path

    from fabricad.errors import EXTRA_OF_MODULE

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]

    def modules(requirements: list[str]) -> set[str]:
        names = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}
        return {{"scikit-learn": "sklearn"}.get(n, n.replace("-", "_")) for n in names}

    train = modules(project["optional-dependencies"]["train"])
    assert train == {m for m, extra in EXTRA_OF_MODULE.items() if extra == "train"}
    assert not train & modules(project["dependencies"])


def test_onnx_thread_spinning_modes(exported):
    """never: workers sleep; during_run: spin only inside a run (the library default); always: ORT's own default."""
    from fabricad.inference.backends import OnnxBackend

    _, bundle = exported["rd-resnet18"]

    def entry(backend, key):
        try:
            return backend.session.get_session_options().get_session_config_entry(key)
        except Exception:  # ORT raises for an entry that was never set
            return None

    never = OnnxBackend(bundle, ["cpu"], threads=1, spinning="never")
    assert entry(never, "session.intra_op.allow_spinning") == "0"
    default = OnnxBackend(bundle, ["cpu"], threads=1)
    assert entry(default, "session.force_spinning_stop") == "1"
    assert entry(default, "session.intra_op.allow_spinning") != "0"
    always = OnnxBackend(bundle, ["cpu"], threads=1, spinning="always")
    assert entry(always, "session.force_spinning_stop") is None and entry(always, "session.intra_op.allow_spinning") != "0"
    with pytest.raises(FabricadError, match="spinning must be one of"):
        OnnxBackend(bundle, ["cpu"], spinning=True)


def test_service_spinning_setting_accepts_old_booleans(monkeypatch):
    from fabricad.service.settings import ServiceSettings

    assert ServiceSettings().ort_spinning == "never"
    for old, new in (("true", "always"), ("false", "never"), ("during_run", "during_run")):
        monkeypatch.setenv("FABRICAD_ORT_SPINNING", old)
        assert ServiceSettings().ort_spinning == new



def test_engine_stretches_a_squeezed_scan_and_maps_it_back_onto_its_pixels(exported):
    """The engine's path for a scan whose rows lie twice as close as the reference's (a web
    running too fast): stretched before tiling, and the map returned at the scan's own size.
    The reference is the twill of test_alignment (the synthetic plain weave squeezed 2× gains
    1.85 in peak match, under the threshold of 2), so this checks the plumbing, not the model."""
    from fabricad.data.alignment import TextureReference
    from tests.test_alignment import twill

    _, bundle = exported["rd-resnet18"]
    engine = InferenceEngine.load(bundle)
    engine.texture = TextureReference.from_images([twill(seed) for seed in range(3)])
    squeezed = twill(16, squeeze=2.0)
    result = engine.inspect(squeezed)
    assert result.alignment.stretch == 2.0, result.alignment
    assert result.anomaly_map.shape == squeezed.shape[:2]
    assert result.as_dict()["alignment"]["stretch"] == 2.0  # what the API and the defect log carry


def test_operating_point_rules_and_zones_decide_the_verdict(exported):
    """With an operating point, the verdict is whether any region survives its rules: a speck
    below the size rule raises no alarm, a defect above it does, and a zone taught a higher
    threshold (a selvedge) ignores what the same threshold flags elsewhere."""
    from fabricad.inference.operating_point import OperatingPoint

    _, bundle = exported["rd-resnet18"]
    meta, _ = read_bundle(bundle)
    plain = {k: v for k, v in meta.model.items() if k not in ("fabric_edges", "fabric_roi")}
    engine = InferenceEngine(EchoBackend(), meta.model_copy(update={"model": plain}), batch_size=64, mode="tile",
                             align=False)
    engine.set_threshold(0.5)
    image = np.full((64, 192, 3), 40, np.uint8)
    image[10:12, 100:102] = 250  # a 2×2 px speck: 0.5 mm² at 0.5 mm/px
    assert engine.inspect(image).is_defect  # the threshold alone alarms
    engine.use_operating_point(OperatingPoint(mm_per_px=0.5, min_area_mm2=4, min_length_mm=2))
    assert not engine.inspect(image).is_defect
    image[30:40, 20:30] = 250  # 10×10 px: 25 mm², 5 mm
    result = engine.inspect(image)
    assert result.is_defect and len(result.regions) == 1 and result.regions[0].x <= 22
    # three zones: the left one taught high, so the same defect there is normal for that band
    engine.use_operating_point(OperatingPoint(mm_per_px=0.5, zone_thresholds=[0.99, 0.5, 0.5]))
    result = engine.inspect(image)
    assert [r.x for r in result.regions] == [100] and result.is_defect
    engine.use_operating_point(None)
    assert len(engine.inspect(image).regions) == 2
