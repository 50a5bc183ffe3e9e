"""`from fabricad import Inspector`: the Python API on a real exported bundle (ONNX Runtime),
scoring exactly as the engine the service runs."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fabricad import Inspector
from fabricad.data.synthetic import FABRICS, PlacedDefect, render_fabric, render_roll
from fabricad.errors import FabricadError
from fabricad.inference.engine import InferenceEngine


@pytest.fixture(scope="module")
def bundle(trained_models):
    return trained_models / "plain"


def test_an_inspection_is_the_engine_s_result_with_pictures(bundle, tmp_path):
    hole, _ = render_roll("plain", 160, 160, [PlacedDefect("hole", 50, 50, 40, 40)], seed=4)
    good = render_fabric(FABRICS["plain"], 160, 160, np.random.default_rng(4))
    cv2.imwrite(str(tmp_path / "hole.png"), cv2.cvtColor(hole, cv2.COLOR_RGB2BGR))
    inspector = Inspector(bundle)
    by_path, by_array = inspector.inspect_many([tmp_path / "hole.png", good])
    engine = InferenceEngine.load(bundle).predict([hole, good])
    assert by_path.score == pytest.approx(engine[0].score, rel=1e-5) and by_array.score == pytest.approx(engine[1].score, rel=1e-5)
    assert by_path.verdict == "DEFECT" and by_path.regions and by_path.source.endswith("hole.png")
    assert by_path.score > by_array.score
    assert repr(by_path).startswith(f"<Inspection {tmp_path / 'hole.png'}: DEFECT")

    saved = cv2.imread(str(by_path.save(tmp_path / "out" / "hole-overlay.png")))
    assert saved.shape[1] == 160 and saved.shape[0] > 160  # the overlay under its caption band
    written = json.loads(by_path.save(tmp_path / "hole.json").read_text())
    assert written["verdict"] == "DEFECT" and written["regions"][0]["area"] > 0
    assert by_path._repr_png_().startswith(b"\x89PNG")
    assert "DEFECT" in by_path.plot().get_title()


def test_the_threshold_can_be_set_and_bad_input_is_refused_with_the_reason(bundle, tmp_path):
    good = render_fabric(FABRICS["plain"], 128, 128, np.random.default_rng(8))
    inspector = Inspector(bundle, threshold=1e-9)
    assert inspector.threshold == pytest.approx(1e-9) and inspector.inspect(good).verdict == "DEFECT"
    inspector.threshold = 1e9
    assert inspector.inspect(good).verdict == "OK"
    assert inspector.inspect(good[:, :, 0]).verdict == "OK"  # a grey image is taken as it is
    with pytest.raises(FabricadError, match="too small"):
        inspector.inspect(good[:4, :4])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(FabricadError, match="broken.png"):
        inspector.inspect(tmp_path / "broken.png")
    with pytest.raises(FabricadError, match="path or an RGB numpy array"):
        inspector.inspect(42)
    with pytest.raises(FabricadError, match="not an exported bundle"):
        Inspector(tmp_path)


def test_importing_fabricad_loads_no_inference_runtime():
    code = "import sys, fabricad; print('onnxruntime' in sys.modules, 'torch' in sys.modules); fabricad.Inspector"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
