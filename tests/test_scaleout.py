"""Scale-out: the Triton model repository against its ONNX graph, remote engines behind the
service (Ray Serve for real when installed; a missing or unreachable engine says why)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fabricad.errors import FabricadError
from tests.conftest import quick_config
from tests.live_server import ADMIN, Server, _free_port, png

httpx = pytest.importorskip("httpx")
TRITON_TYPES = {"tensor(uint8)": "TYPE_UINT8", "tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fabric_category) -> Path:
    from fabricad.training import train

    out = tmp_path_factory.mktemp("scaleout") / "plain-run"
    train(quick_config(fabric_category), out, progress=False)
    return out


def test_triton_repository_matches_the_graph(run_dir, tmp_path):
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    import onnxruntime as ort
    from typer.testing import CliRunner

    from fabricad.cli import app
    from fabricad.inference.engine import InferenceEngine

    result = CliRunner().invoke(app, ["export", "--model", str(run_dir), "--format", "triton", "--out", str(tmp_path / "repo"),
                                      "--name", "plain", "-q"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "repo" / "plain"
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == "plain" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.instance_group[0].count == 1
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    h, w, _ = config.input[0].dims
    produced = dict(zip([o.name for o in session.get_outputs()],
                        session.run(None, {"image": np.zeros((2, h, w, 3), np.uint8)})))
    for declared, actual in [*zip(config.input, session.get_inputs()), *zip(config.output, session.get_outputs())]:
        assert declared.name == actual.name
        assert model_config_pb2.DataType.Name(declared.data_type) == TRITON_TYPES[actual.type]
        assert not isinstance(actual.shape[0], int)  # the batch axis is dynamic for the batcher
        # batch axis excluded; symbolic graph dims must be what the graph really produces;
        # a per-image scalar is declared [1] and reshaped to []
        real = list(produced[actual.name].shape[1:]) if actual.name in produced else list(actual.shape[1:])
        graph = [d if isinstance(d, int) else real[i] for i, d in enumerate(actual.shape[1:])]
        assert list(declared.dims) == (graph or [1]), (declared.name, declared.dims, actual.shape)
    assert len(config.input) == len(session.get_inputs()) and len(config.output) == len(session.get_outputs())
    assert list(config.output[1].reshape.shape) == []
    # the version folder is a fabricad bundle too: the service reads threshold and tiling from it
    engine = InferenceEngine.load(folder / "1")
    h, w = engine.input_size
    outputs = engine.backend(np.zeros((3, h, w, 3), np.uint8))
    assert outputs[0].shape == (3, h, w) and outputs[1].shape == (3,)


def test_unreachable_or_missing_engines_say_why(run_dir, tmp_path):
    from fabricad.export.onnx_export import export_checkpoint
    from fabricad.inference.bundle import read_bundle
    from fabricad.inference.remote import RayServeBackend, TritonBackend
    from fabricad.service.settings import ServiceSettings

    meta, _ = read_bundle(export_checkpoint(run_dir, tmp_path / "b", progress=False))
    port = _free_port()  # nothing listens there
    with pytest.raises(FabricadError, match="not reachable"):
        RayServeBackend(f"http://127.0.0.1:{port}", meta)
    try:
        import tritonclient.http  # noqa: F401
    except ImportError:
        with pytest.raises(FabricadError, match="pip install 'tritonclient"):
            TritonBackend(f"127.0.0.1:{port}", meta)
    else:
        with pytest.raises(FabricadError, match="not reachable"):
            TritonBackend(f"127.0.0.1:{port}", meta)
    with pytest.raises(ValueError, match="engine_url"):
        ServiceSettings(engine="triton")


def test_service_not_ready_while_its_engine_is_unreachable(models_dir, tmp_path):
    port = _free_port()
    server = Server(models_dir, tmp_path, require_ready=False, FABRICAD_ENGINE="ray",
                    FABRICAD_ENGINE_URL=f"http://127.0.0.1:{port}")
    try:
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert any("not reachable" in p for p in ready.json()["problems"]), ready.json()
        frame = png(np.full((64, 64, 3), 128, np.uint8))
        inspect = httpx.post(f"{server.url}/v1/inspect", content=frame, headers={"content-type": "image/png"})
        assert inspect.status_code == 404 and "no active model" in inspect.json()["detail"]  # a reason, not a 500
        named = httpx.post(f"{server.url}/v1/inspect?model=plain-a", content=frame, headers={"content-type": "image/png"})
        assert named.status_code == 400 and "not reachable" in named.json()["detail"]
    finally:
        server.stop()


@pytest.mark.slow
def test_service_runs_its_model_on_ray_serve(run_dir, tmp_path):
    pytest.importorskip("ray.serve")
    from fabricad.data.synthetic import FABRICS, render_fabric
    from fabricad.export.onnx_export import export_checkpoint

    models = tmp_path / "models"
    export_checkpoint(run_dir, models / "plain", name="plain", progress=False)
    port = _free_port()
    log = open(tmp_path / "ray.log", "w")
    engine = subprocess.Popen([sys.executable, "-m", "fabricad.cli", "engine", "ray", "--models", str(models),
                               "--port", str(port), "--replicas", "1"], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/plain/-/meta", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert engine.poll() is None, Path(log.name).read_text()[-3000:]
            time.sleep(1)
        remote = Server(models, tmp_path / "remote", FABRICAD_ENGINE="ray", FABRICAD_ENGINE_URL=f"http://127.0.0.1:{port}")
        local = Server(models, tmp_path / "local")
        try:
            image = png(render_fabric(FABRICS["plain"], 64, 64, np.random.default_rng(1)))
            answers = [httpx.post(f"{s.url}/v1/inspect", content=image, headers={"content-type": "image/png"}, timeout=60).json()
                       for s in (remote, local)]
            assert answers[0]["score"] == pytest.approx(answers[1]["score"], rel=1e-5)
            assert httpx.get(f"{remote.url}/v1/models").json()[0]["backend"] == "ray-serve"
            # a threshold change on the service applies to remote inference too: it lives in the engine wrapper
            httpx.put(f"{remote.url}/v1/models/plain/threshold", json={"value": 0.0}, headers={"X-API-Key": ADMIN})
            again = httpx.post(f"{remote.url}/v1/inspect", content=image, headers={"content-type": "image/png"}, timeout=60).json()
            assert again["verdict"] == "DEFECT"
        finally:
            remote.stop()
            local.stop()
    finally:
        engine.send_signal(signal.SIGINT)
        try:
            engine.wait(60)
        except subprocess.TimeoutExpired:
            engine.kill()
