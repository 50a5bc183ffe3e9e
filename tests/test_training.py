"""Training for real: it learns, checkpoints round-trip, resume works, bad input is explained."""

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from fabricad.cli import app
from fabricad.data import load_dataset
from fabricad.data.alignment import TextureReference
from fabricad.data.synthetic import FABRICS, add_defect
from fabricad.errors import CheckpointError, DataError
from fabricad.training import load_model, read_checkpoint, save_checkpoint, train
from fabricad.training.dataset import to_tensor
from tests.conftest import quick_config


@pytest.mark.slow
def test_map_is_higher_on_a_pasted_defect(trained_run, fabric_category):
    """The learning test: after a short real run, a defect lights up and clean fabric does not."""
    model, _ = load_model(trained_run / "model.ckpt")
    rng = np.random.default_rng(123)
    clean = next(s for s in load_dataset(fabric_category).test if s.label == 0)
    wins = 0
    for kind in ("stain", "hole", "thick_place"):
        image, mask = add_defect(clean.load(), kind, rng, FABRICS["plain"], strength=0.9)
        with torch.no_grad():
            amap, _ = model(to_tensor(image)[None])
        amap = amap[0, 0].numpy()
        inside, outside = amap[mask].mean(), amap[~mask].mean()
        wins += inside > 1.5 * outside
    assert wins >= 2, "the anomaly map did not single out pasted defects"


@pytest.mark.slow
def test_checkpoint_carries_config_teacher_and_score_stats(trained_run):
    ckpt = read_checkpoint(trained_run)
    assert ckpt.teacher["name"] == "tf_efficientnet_lite0"
    assert ckpt.teacher["weights_source"] == "packaged"
    assert len(ckpt.teacher["sha256"]) == 64
    stats = ckpt.score_stats
    assert stats["count"] >= 1 and stats["quantiles"]["0.99"] >= stats["mean"]
    assert ckpt.training["dataset"]["holdout"] >= 1
    assert TextureReference.decode(ckpt.texture) is not None  # the weave, for aligning served scans
    on_disk = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert on_disk == ckpt.config.model_dump(mode="json")


def test_checkpoint_round_trip_gives_identical_maps(tmp_path, fabric_category):
    out = tmp_path / "run"
    train(quick_config(fabric_category), out, progress=False)
    first, ckpt = load_model(out / "model.ckpt")
    second, _ = load_model(out)
    # Whole images have no neighbours: the default `model.tile_context` is saved off, and the
    # model takes the bare image (a map of its size).
    assert quick_config(fabric_category).model.tile_context and not ckpt.config.model.tile_context
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(first(x)[0], second(x)[0])
        assert first(x)[0].shape == (2, 1, 64, 64)


def test_training_is_reproducible_on_cpu(tmp_path, fabric_category):
    states = []
    for name in ("a", "b"):
        train(quick_config(fabric_category), tmp_path / name, progress=False)
        states.append(read_checkpoint(tmp_path / name).state_dict)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_training_runs_the_teacher_where_configured(tmp_path, fabric_category, caplog, runtime):
    """On a CPU the default runs the frozen teacher in ONNX Runtime (padded 64 px = 128 px input)."""
    with caplog.at_level("INFO", logger="fabricad.backbones.teacher_runtime"):
        train(quick_config(fabric_category, **{"train.teacher_runtime": runtime}), tmp_path / "run", progress=False)
    assert ("teacher runs in ONNX Runtime at 128x128" in caplog.text) == (runtime == "onnxruntime")
    assert "teacher runs in PyTorch" not in caplog.text  # no fallback either


def test_resume_continues_from_the_saved_epoch(tmp_path, fabric_category):
    out = tmp_path / "run"
    config = quick_config(fabric_category, **{"train.max_steps": "null", "train.epochs": "1", "train.patience": "5"})
    train(config, out, progress=False)
    assert read_checkpoint(out).training["epoch"] == 1
    result = train(config.with_overrides(["train.epochs=2"]), out, resume=out / "model.ckpt", progress=False)
    ckpt = read_checkpoint(out)
    assert result.epochs == 2 and ckpt.training["epoch"] == 2
    assert [h["epoch"] for h in ckpt.training["history"]] == [1, 2]
    assert not (out / "model.prev.ckpt").exists()  # resuming a run is the same run
    from fabricad.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot resume"):
        train(config.with_overrides(["model.width=96"]), out, resume=out / "model.ckpt", progress=False)


def test_mismatched_teacher_is_refused(tmp_path, fabric_category):
    out = tmp_path / "run"
    train(quick_config(fabric_category), out, progress=False)
    payload = torch.load(out / "model.ckpt", weights_only=True)
    payload["teacher"]["sha256"] = "0" * 64
    payload["teacher_state"] = None  # as if it were a named source whose weights changed
    payload["teacher"]["weights_source"] = "random"
    torch.save(payload, out / "model.ckpt")
    with pytest.raises(CheckpointError, match="teacher"):
        load_model(out / "model.ckpt")


def test_incompatible_format_and_corrupt_files(tmp_path, fabric_category):
    out = tmp_path / "run"
    train(quick_config(fabric_category), out, progress=False)
    payload = torch.load(out / "model.ckpt", weights_only=True)
    payload["format"] = 99
    torch.save(payload, tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match="format 99"):
        read_checkpoint(tmp_path / "future.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable"):
        read_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "absent.ckpt")


def test_architecture_mismatch_is_refused(tmp_path, fabric_category):
    out = tmp_path / "run"
    train(quick_config(fabric_category), out, progress=False)
    model, ckpt = load_model(out)
    wider = quick_config(fabric_category, **{"model.width": "96"})
    from fabricad.models import create_model

    other = create_model(wider.model)
    save_checkpoint(tmp_path / "wide.ckpt", other, wider)
    payload = torch.load(tmp_path / "wide.ckpt", weights_only=True)
    payload["config"] = ckpt.config.model_dump(mode="json")  # config says width 64, weights are 96
    payload["teacher_state"] = {k: v for k, v in model.teacher.state_dict().items()}
    payload["teacher"] = {"name": "resnet18", "weights_source": "random", "sha256": model.teacher.weights_hash}
    torch.save(payload, tmp_path / "wide.ckpt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "wide.ckpt")


def test_unreadable_training_image_is_named(tmp_path, fabric_category):
    copy = tmp_path / "cat"
    shutil.copytree(fabric_category, copy)
    (copy / "train" / "good" / "999.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="999.png"):
        train(quick_config(copy), tmp_path / "run", progress=False)


def test_any_image_size_and_channel_count_trains(tmp_path):
    import cv2

    folder = tmp_path / "odd" / "train" / "good"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 255, (50, 70), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 255, (90, 40, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65535, (64, 64), dtype=np.uint16))
    cv2.imwrite(str(folder / "rgb.jpg"), rng.integers(0, 255, (33, 200, 3), dtype=np.uint8))
    result = train(quick_config(tmp_path / "odd", **{"train.batch_size": "2"}), tmp_path / "run", progress=False)
    assert result.checkpoint.is_file()


def test_small_images_train_at_their_own_size_unless_upscaled(tmp_path):
    """96² photos with the input set to 128²: the model is trained and saved at 96² (what eval,
    export and the service then use), unless `data.upscale` asks for the enlargement."""
    folder = tmp_path / "small" / "train" / "good"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    for upscale, expected in (("false", (96, 96)), ("true", (128, 128))):
        out = tmp_path / f"run-{upscale}"
        config = quick_config(tmp_path / "small", **{"data.image_size": "128", "data.upscale": upscale,
                                                    "train.batch_size": "2", "train.max_steps": "1"})
        assert train(config, out, progress=False).image_size == expected
        assert read_checkpoint(out / "model.ckpt").config.data.image_size == expected
        assert tuple(yaml.safe_load((out / "config.yaml").read_text())["data"]["image_size"]) == expected


runner = CliRunner()


def test_cli_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "info", "generate", "demo"):
        assert command in result.output


def test_cli_generate_non_square_grayscale(tmp_path):
    """A mill's camera may give monochrome, non-square crops: the generator makes them, and the
    loader reads them as RGB at their own size with masks of the same size."""
    args = ["generate", str(tmp_path), "--fabric", "twill", "--size", "48", "--width", "80", "--grayscale",
            "--train-images", "2", "--test-good", "1", "--test-defect", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "twill").rglob("*.png"))
    images = [p for p in written if "ground_truth" not in p.parts]
    assert len(images) == 5 and all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape == (48, 80) for p in images)
    split = load_dataset(tmp_path, "twill")
    defective = next(s for s in split.test if s.label)
    assert defective.load().shape == (48, 80, 3) and defective.load_mask().shape == (48, 80)
    assert defective.load_mask().any()


def test_cli_train_writes_checkpoint_and_config(tmp_path, fabric_category):
    out = tmp_path / "cli"
    args = ["train", "--data", str(fabric_category.parent), "--category", "plain", "--out", str(out),
            "--image-size", "64", "--teacher", "resnet18", "--teacher-weights", "random",
            "--max-steps", "3", "--batch-size", "4", "--set", "model.width=32", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "model.ckpt").is_file() and (out / "config.yaml").is_file()
    assert "(3 steps) at 64x64 px" in result.output
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "resnet18" in info.output
    assert "texture_reference: weave spectrum of" in info.output


def test_cli_errors_are_messages_not_tracebacks(tmp_path):
    import subprocess
    import sys

    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "fabricad", "train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "train/good" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_distributed_training_matches_one_process(fabric_category, tmp_path):
    """Two torchrun processes on the gloo backend (CPU), batch 2 each, give the weights of one
    process with batch 2 and two accumulated micro-batches: gradients are really averaged across
    processes, and both processes end with identical weights."""
    import subprocess
    import sys

    from fabricad.training import load_model, train
    from fabricad.training.trainer import weights_digest
    from tests.live_server import _free_port

    common = {"train.batch_size": "2", "train.max_steps": "3", "train.patience": "100", "data.holdout_fraction": "0",
              "data.augment": "false", "train.threads": "1"}
    accumulated = train(quick_config(fabric_category, **common, **{"train.accumulate": "2"}), tmp_path / "single",
                        progress=False)
    plain = train(quick_config(fabric_category, **common), tmp_path / "plain", progress=False)
    config = quick_config(fabric_category, **common)
    args = [f"model.teacher.name={config.model.teacher.name}", f"model.teacher.weights={config.model.teacher.weights}",
            f"model.width={config.model.width}", f"data.image_size={config.data.image_size[0]}",
            *[f"{k}={v}" for k, v in common.items()]]
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
         str(root / "tests" / "ddp_worker.py"), str(fabric_category), str(tmp_path / "ddp"), *args],
        capture_output=True, text=True, timeout=600, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert run.returncode == 0, run.stderr[-3000:]
    digests = {(tmp_path / "ddp" / f"digest-rank{r}.txt").read_text() for r in (0, 1)}
    assert len(digests) == 1, "the two processes ended with different weights: gradients were not synchronised"
    ddp_model, ddp_ckpt = load_model(tmp_path / "ddp")
    assert ddp_ckpt.training["world_size"] == 2 and ddp_ckpt.training["step"] == 3
    assert digests == {weights_digest(ddp_model.trainable_state_dict())}  # rank 0 wrote what both hold
    # Parameters follow the averaged gradients. BatchNorm running statistics are not gradients:
    # each process keeps its own and rank 0's are saved, so they are not compared.
    ddp_params = {n: p for n, p in ddp_model.named_parameters() if p.requires_grad}
    single_params = {n: p for n, p in load_model(tmp_path / "single")[0].named_parameters() if p.requires_grad}
    assert ddp_params.keys() == single_params.keys() and len(ddp_params) > 10
    for key, value in single_params.items():
        torch.testing.assert_close(ddp_params[key], value, rtol=1e-4, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")
    # and the match means something: half the batch per step (no second process) trains differently
    assert plain.weights_digest != accumulated.weights_digest


@pytest.mark.parametrize("flip", [True, False])
def test_data_flip_controls_mirroring(flip):
    """`data.flip=false` (the default: a twill's mirror image is a defect) never mirrors a
    training image; `data.flip=true` does, about half the time per axis."""
    from fabricad.data.samples import Sample
    from fabricad.training.dataset import ImageDataset

    ramp = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.float32)[None, :, None], (64, 64, 3)).astype(np.uint8)

    class Ramp(Sample):
        def load(self):
            return ramp.copy()

    dataset = ImageDataset([Ramp("ramp.png", 0)], (64, 64), augment=True, seed=0, flip=flip)
    rows = [dataset[0][0, 32] for _ in range(40)]  # the red channel's middle row, one draw each
    mirrored = sum(float(row[0] > row[-1]) for row in rows)
    assert (mirrored > 5) == flip


def test_random_window_never_neglects_the_ends():
    """Clamped starts make the first and last pixels of a scan as likely to be seen as its
    middle (plain uniform starts would show pixel 0 once in ~length draws), the rest of the end
    windows at most twice as likely."""
    from fabricad.training.dataset import random_window

    torch.manual_seed(0)
    length, size, draws = 40, 8, 20_000
    coverage = np.zeros(length)
    for _ in range(draws):
        start = random_window(length, size)
        assert 0 <= start <= length - size
        coverage[start : start + size] += 1
    expected = draws * size / (length + size - 1)
    ratio = coverage / expected
    assert ratio.min() > 0.9 and ratio.max() < 2.1, ratio
    assert abs(ratio[0] - 1) < 0.1 and abs(ratio[-1] - 1) < 0.1 and abs(ratio[length // 2] - 1) < 0.1, ratio
    assert random_window(8, 8) == 0  # a window as wide as the image has one place


@pytest.mark.parametrize("random_tiles", [True, False])
def test_random_tiles_cut_training_tiles_anywhere(tmp_path, random_tiles):
    """With `data.random_tiles`, a grid tile of a wide scan comes back from ever new offsets of
    its source image; without it, always from its own box."""
    from fabricad.data.samples import Sample
    from fabricad.training.dataset import ImageDataset

    # A 32x128 scan whose columns encode their x position; grid tile 1 is x = 32..63.
    scan = np.broadcast_to((np.arange(128, dtype=np.uint8) * 2)[None, :, None], (32, 128, 3))
    cv2.imwrite(str(tmp_path / "scan.png"), np.ascontiguousarray(scan))
    dataset = ImageDataset([Sample(tmp_path / "scan.png", crop=(32, 0, 32, 32))], (32, 32), random_tiles=random_tiles)
    torch.manual_seed(0)
    starts = set()
    for _ in range(30):
        tile = (dataset[0][0].numpy() * 255).round().astype(int)
        assert tile.shape == (32, 32) and np.all(np.diff(tile[0]) == 2)  # a contiguous crop, never resized
        starts.add(int(tile[0, 0]) // 2)
    assert (starts == {32}) != random_tiles
    assert not random_tiles or len(starts) > 10


def test_skew_shears_a_tile_with_the_fabric_beside_it(tmp_path):
    """`data.skew` moves a tile's rows sideways in proportion to their height, filling them from
    the scan beside the tile (not by reflecting the tile), and leaves about half the draws alone."""
    from fabricad.data.samples import Sample
    from fabricad.training.dataset import ImageDataset

    # A 32x128 scan whose columns encode their x position; the tile is x = 64..95.
    scan = np.broadcast_to(np.arange(128, dtype=np.uint8)[None, :, None], (32, 128, 3))
    cv2.imwrite(str(tmp_path / "scan.png"), np.ascontiguousarray(scan))
    sample = Sample(tmp_path / "scan.png", crop=(64, 0, 32, 32))
    dataset = ImageDataset([sample], (32, 32), skew=30)
    tile = dataset.tile(sample, 0.5)[..., 0].astype(int)
    # Row y shows source column x - 0.5·(y - 16): the top row comes from 8 columns to the right
    # of the tile, the bottom one from 7.5 to the left; both lie outside the tile's own box.
    np.testing.assert_array_equal(tile[0], np.arange(72, 104))
    np.testing.assert_allclose(tile[31], np.arange(56.5, 88.5), atol=0.6)
    grid = np.broadcast_to(np.arange(64, 96), (32, 32))
    assert np.array_equal(dataset.tile(sample, 0.0)[..., 0], grid)

    # With `model.tile_context` the sheared tile comes with its sheared neighbours: the middle is
    # the same sheared tile, and the context rows continue the same shear from the same scan.
    framed = ImageDataset([sample], (32, 32), skew=30, context=4).tile(sample, 0.5)[..., 0].astype(int)
    assert framed.shape == (40, 40)
    np.testing.assert_array_equal(framed[4:36, 4:36], tile)
    np.testing.assert_array_equal(framed[0], np.arange(70, 110))  # 4 rows above the tile: 2 columns further right

    def sheared_draws() -> list[bool]:
        torch.manual_seed(0)
        return [not np.array_equal((dataset[0][0].numpy() * 255).round(), grid) for _ in range(40)]

    draws = sheared_draws()
    assert 10 < sum(draws) < 30
    assert draws == sheared_draws()  # torch's RNG: seeded runs stay reproducible


def test_tiles_of_one_scan_share_one_decode(tmp_path, monkeypatch):
    """Every tile of a wide scan is cut from one decode of it, and the cached tiles hold no more
    than that one decoded scan (a tile per decode once kept 16 whole scans alive per AITEX scan)."""
    from fabricad.data import Sample
    from fabricad.training.dataset import ImageDataset

    rng = np.random.default_rng(0)
    scan = rng.integers(0, 256, (32, 256, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "scan.png"), scan)
    decodes = []
    load_source = Sample.load_source
    monkeypatch.setattr(Sample, "load_source", lambda self: decodes.append(self.path) or load_source(self))
    samples = [Sample(tmp_path / "scan.png", crop=(x, 0, 32, 32), group="scan") for x in range(0, 256, 32)]
    dataset = ImageDataset(samples, (32, 32))
    tiles = [dataset[i] for i in range(len(samples))]
    assert len(decodes) == 1
    expected = cv2.cvtColor(scan, cv2.COLOR_BGR2RGB)
    for x, tile in zip(range(0, 256, 32), tiles):
        assert np.array_equal((tile.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), expected[:, x : x + 32])
    held = {id(a.base if a.base is not None else a) for a in dataset._cache.values()}
    assert len(held) == 1  # all views of the one decoded scan


def test_a_new_run_into_a_used_folder_keeps_the_model_it_held(tmp_path, fabric_category):
    """Retraining a fabric into the same folder must not lose the model the line runs on."""
    out = tmp_path / "run"
    train(quick_config(fabric_category, **{"train.max_steps": "1"}), out, progress=False)
    first = (out / "model.ckpt").read_bytes()
    train(quick_config(fabric_category, **{"train.max_steps": "2"}), out, progress=False)
    assert (out / "model.prev.ckpt").read_bytes() == first
    assert read_checkpoint(out).training["step"] == 2 and read_checkpoint(out / "model.prev.ckpt").training["step"] == 1


def test_training_says_when_the_threshold_rests_on_few_images(tmp_path, fabric_category, caplog):
    """A 1 % threshold calibrated on three held-out images is a guess; the person training must
    hear it then, not from the line's false alarms."""
    with caplog.at_level("WARNING", logger="fabricad.training.trainer"):
        train(quick_config(fabric_category, **{"train.max_steps": "1"}), tmp_path / "few", progress=False)
        assert any("rests on 3 held-out normal images (of 24)" in r.getMessage() for r in caplog.records)
        caplog.clear()
        train(quick_config(fabric_category, **{"train.max_steps": "1", "data.holdout_fraction": "0.5"}), tmp_path / "half",
              progress=False)
        assert not [r for r in caplog.records if "rests on" in r.getMessage()]


def test_calibration_scores_what_inference_scores(trained_run, fabric_category, tmp_path):
    """Held-out normal images are scored for the threshold exactly as inference scores them: with
    the fabric ROI, which blanks a white strip beyond the fabric edge (before, calibration scored
    the bare map, whose strip and edge inference never reports)."""
    from fabricad.data import Sample
    from fabricad.training.dataset import ImageDataset
    from fabricad.training.trainer import holdout_scores

    paths = []
    for i, source in enumerate(sorted((fabric_category / "train" / "good").glob("*.png"))[:6]):
        image = cv2.imread(str(source))
        image[:, : 20 + 6 * i] = 255  # scanner white beyond the edge, a different width each
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    model, ckpt = load_model(trained_run)
    plain, _ = load_model(trained_run, ["model.fabric_roi=false"])
    dataset = ImageDataset([Sample(p) for p in paths], ckpt.config.data.image_size, context=model.context)
    with torch.no_grad():
        inference = model(torch.stack([dataset[i] for i in range(len(dataset))]))[1].numpy()
    calibration = holdout_scores(model, dataset.samples, 4, torch.device("cpu"), ckpt.config)
    bare = holdout_scores(plain, dataset.samples, 4, torch.device("cpu"), ckpt.config)
    np.testing.assert_allclose(calibration, inference, rtol=1e-5)
    assert np.mean(bare) > np.mean(calibration) * 1.05  # the strip mattered


def test_holdout_loss_is_the_mean_over_images_and_keeps_the_mode(trained_run, fabric_category):
    """Early stopping watches the held-out loss between epochs: it must not depend on how the
    images fall into batches, it must not build autograd graphs, and the model must go on
    training afterwards."""
    from fabricad.data import Sample
    from fabricad.models.loss import distillation_loss
    from fabricad.training.dataset import ImageDataset
    from fabricad.training.trainer import holdout_loss

    model, ckpt = load_model(trained_run)
    paths = sorted((fabric_category / "train" / "good").glob("*.png"))[:5]
    dataset = ImageDataset([Sample(p) for p in paths], ckpt.config.data.image_size, context=model.context)
    model.train()
    distill, graphs = model.distill, []

    def watched(batch):  # a pass between epochs must not build autograd graphs
        graphs.append(torch.is_grad_enabled())
        return distill(batch)

    model.distill = watched
    in_threes = holdout_loss(model, dataset, 3, torch.device("cpu"))
    model.distill = distill
    assert graphs == [False, False]
    assert model.training
    model.eval()
    with torch.no_grad():
        whole = distillation_loss(*model.distill(torch.stack([dataset[i] for i in range(len(dataset))]))).item()
    assert in_threes == pytest.approx(whole, rel=1e-4)
