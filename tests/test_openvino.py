"""OpenVINO as the runtime of a bundle: the same maps as ONNX Runtime on the fp32 graph, the INT8
graph run as integer kernels with the same ranking, the service on it, and clear errors."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from fabricad.data import load_dataset
from fabricad.data.images import resize
from fabricad.errors import FabricadError, MissingExtraError
from fabricad.inference.backends import OnnxBackend, OpenVinoBackend
from fabricad.inference.engine import InferenceEngine
from tests.live_server import Server, png

pytest.importorskip("openvino")
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def test_images(trained_models, fabric_category):
    size = OnnxBackend(trained_models / "plain", ["cpu"]).input_size
    split = load_dataset(fabric_category)
    return np.stack([resize(s.load(), size) for s in split.test]), np.array([s.label for s in split.test])


def test_openvino_gives_onnx_runtime_s_maps_and_verdicts(trained_models, test_images):
    images, _ = test_images
    ort_maps, ort_scores = OnnxBackend(trained_models / "plain", ["cpu"])(images[:8])
    backend = OpenVinoBackend(trained_models / "plain")
    ov_maps, ov_scores = backend(images[:8])
    assert backend.name == "openvino[CPU]" and ov_maps.shape == ort_maps.shape
    assert np.abs(ov_maps - ort_maps).max() <= 1e-4 * np.abs(ort_maps).max()
    assert ov_scores == pytest.approx(ort_scores, rel=1e-4)
    on_ort, on_ov = (InferenceEngine.load(trained_models / "plain", backend=b) for b in ("onnx", "openvino"))
    wide = np.concatenate([images[0], images[-1]], axis=1)  # tiles of a wider scan, batched
    assert on_ov.inspect(wide).is_defect == on_ort.inspect(wide).is_defect
    assert on_ov.inspect(wide).score == pytest.approx(on_ort.inspect(wide).score, rel=1e-4)


def test_the_int8_bundle_runs_as_integers_with_the_same_ranking(trained_run, fabric_category, test_images, tmp_path):
    from fabricad.export.onnx_export import export_bundle
    from fabricad.inference.metrics import auroc
    from fabricad.training import load_model
    from fabricad.training.trainer import holdout_split

    model, ckpt = load_model(trained_run)
    train_samples, holdout = holdout_split(load_dataset(fabric_category).train, ckpt.config)
    export_bundle(model, ckpt, tmp_path / "int8", precision="int8", calibration_samples=train_samples,
                  holdout_samples=holdout, progress=False)
    images, labels = test_images
    ort8 = OnnxBackend(tmp_path / "int8", ["cpu"])(images)[1]
    ov8 = OpenVinoBackend(tmp_path / "int8")(images)[1]
    assert np.corrcoef(ort8, ov8)[0, 1] > 0.95
    assert auroc(labels, ov8) >= auroc(labels, ort8) - 0.05


def test_one_backend_serves_several_threads_at_once(trained_models, test_images):
    images, _ = test_images
    backend = OpenVinoBackend(trained_models / "plain", threads=1)
    expected = [backend(images[i : i + 1])[1][0] for i in range(4)]
    got: dict[int, list[float]] = {}

    def work(i: int) -> None:
        got[i] = [float(backend(images[i : i + 1])[1][0]) for _ in range(5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):  # each thread its own request: no answer is another thread's
        assert got[i] == pytest.approx([expected[i]] * 5, rel=1e-5)


def test_the_service_runs_its_models_on_openvino(trained_models, test_images, tmp_path):
    server = Server(trained_models, tmp_path, FABRICAD_RUNTIME="openvino")
    try:
        assert httpx.get(f"{server.url}/v1/models").json()[0]["backend"] == "openvino[CPU]"
        answer = httpx.post(f"{server.url}/v1/inspect", content=png(test_images[0][-1]), headers={"content-type": "image/png"},
                            timeout=30)
        assert answer.status_code == 200 and answer.json()["verdict"] in ("OK", "DEFECT")
    finally:
        server.stop()


def test_a_missing_openvino_or_device_is_said_plainly(trained_models, monkeypatch):
    with pytest.raises(FabricadError, match="no-such-device.*not available here"):
        OpenVinoBackend(trained_models / "plain", device="no-such-device")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'fabricad\[openvino\]'"):
        InferenceEngine.load(trained_models / "plain", backend="openvino")


def test_an_openvino_int8_bundle_from_nncf_ranks_like_fp32_and_serves_by_itself(trained_run, fabric_category,
                                                                                 trained_models, test_images, tmp_path):
    pytest.importorskip("nncf")
    from fabricad.export.openvino_export import export_openvino
    from fabricad.inference.bundle import read_bundle
    from fabricad.inference.metrics import auroc

    bundle = export_openvino(trained_run, tmp_path / "models" / "plain-ov", data=fabric_category, progress=False)
    meta, graph = read_bundle(bundle)
    assert graph.name == "model.xml" and meta.precision == "int8" and meta.threshold.method == "normal-quantile"
    engine = InferenceEngine.load(bundle)  # auto: an IR runs on OpenVINO
    assert engine.backend.name == "openvino[CPU]"
    with pytest.raises(FabricadError, match="OpenVINO IR"):
        InferenceEngine.load(bundle, backend="onnx")
    images, labels = test_images
    fp32 = OnnxBackend(trained_models / "plain", ["cpu"])(images)[1]
    int8 = engine.backend(images)[1]
    assert np.corrcoef(fp32, int8)[0, 1] > 0.9 and auroc(labels, int8) >= auroc(labels, fp32) - 0.05
    server = Server(tmp_path / "models", tmp_path / "svc")  # the default runtime: each bundle on its own graph's
    try:
        assert httpx.get(f"{server.url}/v1/models").json()[0]["backend"] == "openvino[CPU]"
        answer = httpx.post(f"{server.url}/v1/inspect", content=png(images[-1]), headers={"content-type": "image/png"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == meta.sha256[:12]
    finally:
        server.stop()
    weights = bundle / "model.bin"
    weights.write_bytes(weights.read_bytes()[:-8])  # a truncated copy: refused, not served
    with pytest.raises(FabricadError, match="does not match the sha256"):
        read_bundle(bundle)
