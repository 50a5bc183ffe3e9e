"""Every command's answer to a wrong invocation, and what `predict` and `eval` write.

A user who mistypes a flag, a setting or a path must read one `error:` line that says what to
change, never a Python traceback; the files a command writes must say what they show.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from fabricad.data.synthetic import generate_category
from tests.conftest import quick_config

WRONG = [
    # (arguments, environment, what the one error line must say)
    (["train"], {}, "no training data"),
    (["train", "--data", "{data}", "--out", "{file}/run", "--max-steps", "1"], {}, "not a directory"),
    (["train", "--data", "{missing}"], {}, "not found"),
    (["train", "--data", "{empty}"], {}, "matches no known dataset layout"),
    (["train", "--data", "{data}", "--device", "gpu0"], {}, "unknown device 'gpu0'"),
    (["train", "--data", "{data}", "--device", "cuda:7"], {}, "cuda:7"),
    (["train", "--data", "{data}", "--image-size", "100"], {}, "multiple of 32"),
    (["train", "--data", "{data}", "--set", "lr=0.1"], {}, "did you mean 'train.lr'"),
    (["train", "--data", "{data}", "--set", "train.lr"], {}, "section.key=value"),
    (["train", "--data", "{data}", "--set", "train.lr=-1"], {}, "train.lr"),
    (["train", "--data", "{data}", "--model", "vit"], {}, "model.name"),
    (["train", "--data", "{data}", "--epochs", "many"], {}, "--epochs"),
    (["train", "--data", "{data}", "--config", "{missing}"], {}, "not found"),
    (["train", "--data", "{data}", "--teacher", "no_such_net", "--max-steps", "1"], {}, "no_such_net"),
    (["eval"], {}, "--model"),
    (["eval", "--model", "{missing}"], {}, "not found"),
    (["eval", "--model", "{corrupt}"], {}, "model.ckpt"),
    (["eval", "--model", "{checkpoint}", "--device", "tpu"], {}, "unknown device"),
    (["eval", "--model", "{checkpoint}", "--set", "model.fabric_roii=false"], {}, "did you mean"),
    (["export", "--model", "{checkpoint}", "--format", "tflite"], {}, "tflite"),
    (["export", "--model", "{checkpoint}", "--precision", "int4"], {}, "int4"),
    (["export", "--model", "{checkpoint}", "--format", "openvino", "--precision", "fp16"], {}, "fp32 or int8"),
    (["predict", "{missing}", "--model", "{bundle}"], {}, "nothing was inspected"),
    (["predict", "{empty}", "--model", "{bundle}"], {}, "no images"),
    (["predict", "{data}", "--model", "{missing}"], {}, "not found"),
    (["predict", "{data}", "--model", "{bundle}", "--backend", "tvm"], {}, "tvm"),
    (["predict", "{data}", "--model", "{bundle}", "--every", "0"], {}, "--every"),
    (["finetune", "--bundle", "{bundle}", "--false-alarms", "{missing}", "--out", "{out}/job"], {}, "not found"),
    (["finetune", "--bundle", "{bundle}", "--false-alarms", "{empty}", "--out", "{out}/job"], {}, "no images"),
    (["finetune", "--bundle", "{bundle}", "--false-alarms", "{data}", "--out", "{out}/job"], {}, "--with-checkpoint"),
    (["finetune", "--bundle", "{missing}", "--false-alarms", "{data}", "--out", "{out}/job"], {}, "not a model bundle"),
    (["finetune", "--bundle", "{bundle}", "--false-alarms", "{data}", "--out", "{out}/job", "--steps", "0"], {}, "--steps"),
    (["train-types", "--bundle", "{missing}", "--data", "{data}"], {}, "not an exported bundle"),
    (["info", "{missing}"], {}, "not found"),
    (["generate", "{out}", "--fabric", "silk"], {}, "silk"),
    (["serve", "--config", "{missing}"], {}, "not found"),
    (["serve", "--config", "{typo_yaml}"], {}, "did you mean 'inspect_workers'"),
    (["serve", "--models", "{out}"], {"FABRICAD_INSPECT_WORKERS": "abc"}, "FABRICAD_INSPECT_WORKERS"),
    (["serve", "--models", "{out}"], {"FABRICAD_ENGINE": "triton"}, "engine_url"),
    (["serve", "--port", "http"], {}, "--port"),
    (["serve", "--ssl-certfile", "{file}"], {}, "both --ssl-certfile and --ssl-keyfile"),
    (["serve", "--ssl-certfile", "{missing}", "--ssl-keyfile", "{file}"], {}, "not found"),
    (["demo", "--no-serve", "--workdir", "{file}"], {}, "a-file"),
    (["engine", "kubernetes"], {}, "kubernetes"),
    (["backup"], {}, "--out"),
    (["backup", "--out", "{out}/b.tar.gz"], {"FABRICAD_DATABASE_URL": "sqlite:///{missing}/x.db"}, "no database at"),
    (["backup", "--out", "{out}/b.tar.gz"], {"FABRICAD_DATABASE_URL": "mysql://h/db"}, "not mysql"),
    (["restore", "{missing}"], {}, "no backup at"),
    (["restore", "{corrupt}/model.ckpt"], {}, "not a fabricad backup"),
    (["no-such-command"], {}, "no-such-command"),
]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, models_dir):
    root = tmp_path_factory.mktemp("cli")
    data = generate_category(root, "plain", size=(64, 64), n_train=4, n_test_good=1, n_test_defect=1, progress=False)
    (root / "empty").mkdir()
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.ckpt").write_bytes(b"not a checkpoint")
    (root / "typo.yaml").write_text("inspect_worker: 4\n")
    (root / "a-file").write_text("not a folder")
    checkpoint = models_dir.parent / "svc-run"
    return {"data": str(data), "missing": str(root / "missing"), "empty": str(root / "empty"), "corrupt": str(corrupt),
            "checkpoint": str(checkpoint), "bundle": str(models_dir / "plain-a"), "out": str(root / "out"),
            "typo_yaml": str(root / "typo.yaml"), "file": str(root / "a-file")}


@pytest.mark.parametrize("args, env, says", WRONG, ids=[" ".join(a[:3]) + (" " + next(iter(e)) if e else "") for a, e, _ in WRONG])
def test_a_wrong_invocation_gets_one_error_line_and_exit_2(args, env, says, cli_files, monkeypatch, capsys):
    from fabricad.cli import main

    monkeypatch.setenv("FABRICAD_CONFIG", "")  # `serve --config` sets it for the process: undone after each case
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(**cli_files))
    monkeypatch.chdir(cli_files["empty"])
    monkeypatch.setattr(sys, "argv", ["fabricad", *(a.format(**cli_files) for a in args)])
    with pytest.raises(SystemExit) as exit_:
        main()  # an exception other than SystemExit is the traceback a user would have seen
    captured = capsys.readouterr()
    text = captured.out + captured.err
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert exit_.value.code == 2, text
    assert len(errors) == 1 and "Traceback" not in text, text
    assert says.lower() in errors[0].lower(), errors[0]


# --- predict and the evaluation report -----------------------------------------------------------

def test_predict_keeps_every_file_apart_searches_folders_and_captions_overlays(tmp_path, models_dir, fabric_category):
    from fabricad.inference.engine import InferenceEngine
    from fabricad.inference.predict import run_predict

    good = sorted((fabric_category / "test" / "good").glob("*.png"))[0]
    hole = sorted((fabric_category / "test").glob("hole/*.png"))[0]
    inputs = tmp_path / "in"
    for kind, source in (("good", good), ("hole", hole)):
        (inputs / "line-1" / kind).mkdir(parents=True)
        (inputs / "line-1" / kind / "000.png").write_bytes(source.read_bytes())
    engine = InferenceEngine.load(models_dir / "plain-a")
    summary = run_predict(engine, [inputs, inputs / "line-1" / "good" / "000.png"], tmp_path / "out", progress=False)
    assert summary["inspected"] == 3
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    overlays = [r["overlay"] for r in rows]
    assert len(set(overlays)) == 3 and "line-1__hole__000_overlay.png" in overlays
    for row in rows:
        picture = cv2.imread(str(tmp_path / "out" / row["overlay"]))
        assert picture.shape[0] > 128  # the caption band above the 128-px image
        band = picture[: picture.shape[0] - 128]
        red = band[..., 2].astype(int) - band[..., 0]
        assert (red.mean() > 60) == row["is_defect"]  # a red band for a defect, grey for OK


def test_report_rows_are_what_they_say(tmp_path):
    from fabricad.evaluation.evaluate import example_rows

    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.95])
    rows = dict(example_rows(labels, scores, threshold=0.5, most=6))
    assert list(rows["missed defects"]) == [3]
    assert list(rows["false alarms"]) == [2]
    assert set(rows["typical catches"]) <= {4, 5}
    clean = np.array([0.1, 0.2, 0.3, 0.6, 0.8, 0.95])
    rows = dict(example_rows(labels, clean, threshold=0.5, most=6))
    assert "missed defects" not in rows and "false alarms" not in rows
    assert list(rows["no defect missed; the closest catches"]) == [3, 4, 5]
    assert list(rows["no false alarm; the normals closest to the threshold"]) == [2, 1, 0]


def test_report_warns_when_the_threshold_rests_on_few_images(tmp_path, fabric_category):
    from fabricad.evaluation import evaluate_checkpoint
    from fabricad.training import train

    train(quick_config(fabric_category), tmp_path / "run", progress=False)
    metrics = evaluate_checkpoint(tmp_path / "run", tmp_path / "eval", progress=False)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert metrics["calibration_images"] < 10
    assert f"rests on {metrics['calibration_images']} held-out" in report
