"""Model shapes for both families and two teacher kinds; loss and anomaly-map semantics."""

import pytest
import torch

from fabricad.config import ModelConfig, TeacherConfig
from fabricad.models import create_model
from fabricad.models.anomaly_map import AnomalyMapGenerator, GaussianBlur
from fabricad.models.loss import distillation_loss

TEACHERS = [
    TeacherConfig(name="resnet18", weights="random"),
    TeacherConfig(name="tf_efficientnet_lite0", weights="packaged"),
]


@pytest.mark.parametrize("teacher", TEACHERS, ids=lambda t: t.name)
@pytest.mark.parametrize("family,skips", [("rd", False), ("dbfad", False), ("dbfad", True)])
def test_output_shapes(teacher, family, skips):
    # A model of whole images (tile_context off) reflect-pads its input itself.
    model = create_model(ModelConfig(name=family, teacher=teacher, width=64, skips=skips, tile_context=False)).eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        targets, predictions = model.distill(x)
        anomaly_map, score = model(x)
    assert [t.shape for t in targets] == [p.shape for p in predictions]
    expected_scales = 4 if family == "dbfad" else 3
    assert len(targets) == expected_scales
    # Features are of the reflect-padded input. rd: strides 8/16/32 (96 + 64 px is not a
    # multiple of the embedding's stride 64: sizes still match); dbfad: stride 4 first, its
    # stride-2 stem pooled to it.
    pad = model.config.pad
    first_stride = 8 if family == "rd" else 4
    assert targets[0].shape[-2:] == ((96 + 2 * pad) // first_stride, (128 + 2 * pad) // first_stride)
    assert anomaly_map.shape == (2, 1, 96, 128)
    assert score.shape == (2,)
    assert torch.allclose(score, anomaly_map.amax(dim=(1, 2, 3)))


def test_padding_is_cropped_away_and_standardising_ignores_exposure():
    config = ModelConfig(teacher=TEACHERS[0], width=32, pad=32, standardize=True, tile_context=False)
    model = create_model(config).eval()
    x = torch.rand(1, 3, 64, 96) * 0.5 + 0.2
    with torch.no_grad():
        amap, score = model(x)
        brighter, _ = model(x * 1.3 + 0.05)  # same texture, other exposure
    assert amap.shape == (1, 1, 64, 96)
    assert torch.allclose(amap, brighter, atol=1e-4)
    assert score.item() == amap.max().item()


def test_map_leaves_out_scales_coarser_than_map_max_stride():
    from fabricad.errors import ConfigError
    from fabricad.models.loss import cosine_distance_maps

    torch.manual_seed(0)
    model = create_model(ModelConfig(teacher=TEACHERS[0], width=32, pad=0, blur_sigma=0)).eval()
    assert model.scale_strides() == [8, 16, 32] and model.map_scales() == [0, 1]  # default: up to stride 16
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        teacher, student = model.distill(x)
        amap, _ = model(x)
        distances = cosine_distance_maps(teacher, student)
        expected = sum(torch.nn.functional.interpolate(d, size=(64, 64), mode="bilinear", align_corners=False)
                       for d in distances[:2])
        assert torch.allclose(amap, expected, atol=1e-6)
        model.config.map_max_stride = None  # every scale
        assert model.map_scales() == [0, 1, 2]
        everything, _ = model(x)
        assert (everything - amap).abs().max() > 1e-3
    dbfad = create_model(ModelConfig(name="dbfad", teacher=TEACHERS[0], width=32))
    assert dbfad.scale_strides() == [4, 4, 8, 16] and dbfad.map_scales() == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="leaves no scale"):
        create_model(ModelConfig(teacher=TEACHERS[0], width=32, map_max_stride=4))


def test_only_the_student_trains():
    model = create_model(ModelConfig(teacher=TEACHERS[0], width=32))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("teacher.") for n in trainable)
    assert not any(k.startswith("teacher.") for k in model.trainable_state_dict())


def test_loss_is_zero_when_student_reproduces_teacher():
    teacher = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)]
    assert distillation_loss(teacher, [t.clone() for t in teacher]).item() == pytest.approx(0, abs=1e-6)
    # Scale does not matter to a cosine distance; direction does.
    assert distillation_loss(teacher, [3 * t for t in teacher]).item() == pytest.approx(0, abs=1e-6)
    assert distillation_loss(teacher, [-t for t in teacher]).item() == pytest.approx(2.0, abs=1e-5)


def test_tile_context_model_takes_padded_inputs():
    """With `tile_context` the model expects inputs already padded by `pad`: one reflect-padded
    by hand gives exactly the map a whole-image model makes of the bare image (which pads itself)."""
    config = ModelConfig(teacher=TEACHERS[0], width=32, pad=16, tile_context=False)
    plain = create_model(config).eval()
    context = create_model(config.model_copy(update={"tile_context": True})).eval()
    context.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 96)
    padded = torch.nn.functional.pad(x, (16, 16, 16, 16), mode="reflect")
    with torch.no_grad():
        expected, score = plain(x)
        amap, context_score = context(padded)
    assert amap.shape == expected.shape == (2, 1, 64, 96)
    assert torch.allclose(amap, expected, atol=1e-5) and torch.allclose(score, context_score, atol=1e-5)
    assert context.context == 16 and plain.context == 0


def test_hard_fraction_averages_only_the_worst_positions():
    """With `hard_fraction`, one badly reproduced position out of 256 dominates the loss, and
    only the hard positions receive gradient."""
    teacher = [torch.randn(1, 8, 16, 16)]
    student = [teacher[0].clone().requires_grad_(True)]
    with torch.no_grad():
        student[0][:, :, 3, 5] = torch.randn(8)  # one wrong vector; every other position is exact
    wrong = 1 - torch.nn.functional.cosine_similarity(teacher[0][0, :, 3, 5], student[0][0, :, 3, 5], dim=0).item()
    assert wrong > 0.05
    assert distillation_loss(teacher, student).item() == pytest.approx(wrong / 256, abs=1e-5)
    hard = distillation_loss(teacher, student, hard_fraction=4 / 256)
    assert hard.item() == pytest.approx(wrong / 4, abs=1e-5)
    hard.backward()
    touched = student[0].grad.abs().sum(dim=1)[0] > 0
    assert touched[3, 5] and touched.sum() <= 4


def test_anomaly_map_marks_where_student_and_teacher_disagree():
    teacher = [torch.randn(1, 8, 16, 16), torch.randn(1, 8, 8, 8)]
    student = [t.clone() for t in teacher]
    student[0][:, :, 4:6, 10:12] *= -1  # disagreement in one place at the fine scale
    for mode in ("add", "mul"):
        if mode == "mul":  # a product needs every scale to disagree there
            student[1][:, :, 2:3, 5:6] *= -1
        amap = AnomalyMapGenerator(mode, sigma=1.0)(teacher, student, (64, 64))
        score = amap.amax(dim=(1, 2, 3))
        peak = divmod(int(amap[0, 0].argmax()), 64)
        assert 16 <= peak[0] < 24 and 40 <= peak[1] < 48, (mode, peak)
        assert score.item() == pytest.approx(amap.max().item())


def test_blur_keeps_constants_and_total_mass():
    blur = GaussianBlur(4.0)
    flat = torch.full((1, 1, 40, 40), 0.7)
    assert torch.allclose(blur(flat), flat, atol=1e-5)
    impulse = torch.zeros(1, 1, 81, 81)
    impulse[0, 0, 40, 40] = 1
    out = blur(impulse)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-4)
    assert out[0, 0, 40, 40] == out.max()
    assert len(blur.kx.flatten()) == 33  # radius 4 sigma, as in the reference implementation


@pytest.mark.parametrize("family", ["rd", "dbfad"])
def test_models_trace_to_onnx(tmp_path, family):
    """Nothing in the models blocks export (full parity is the export module's test)."""
    onnx = pytest.importorskip("onnx")
    from fabricad.export.onnx_export import OPSET

    model = create_model(ModelConfig(name=family, teacher=TEACHERS[1], width=32, skips=True)).eval()
    path = tmp_path / "m.onnx"
    side = 64 + 2 * model.context  # the default model takes a tile with its neighbours
    torch.onnx.export(model, (torch.rand(1, 3, side, side),), str(path), dynamo=False, opset_version=OPSET,
                      input_names=["image"], output_names=["anomaly_map", "score"])
    onnx.checker.check_model(str(path))


@pytest.mark.parametrize("size", [1, 9, 57])
def test_square_max_is_a_square_max_pool(size):
    """The fabric ROI's separable max equals one square max-pool, edges included."""
    import torch.nn.functional as F

    from fabricad.models.base import square_max

    torch.manual_seed(size)
    x = (torch.rand(2, 1, 40, 70) > 0.97).float() * torch.rand(2, 1, 40, 70) - 0.5
    assert torch.equal(square_max(x, size), F.max_pool2d(x, size, 1, size // 2))


def test_patchcore_blanks_the_background_as_the_rd_model_does_on_magnified_tiles():
    """The baseline gets the RD model's fabric ROI, sizes on the fabric included: on a tile
    magnified 2x for the network the margin doubles, so the two methods are compared on the same
    pixels."""
    from fabricad.baselines import PatchCore

    generator = torch.Generator().manual_seed(0)
    fabric = torch.rand(4, 3, 64, 64, generator=generator) * 0.5 + 0.25
    core = PatchCore(TeacherConfig(name="resnet18", weights="random"), roi_margin=4)
    core.fit([fabric[:3]], progress=False)
    frame = fabric[3:].clone()
    frame[..., :16] = 1.0  # the scanner's white beyond the fabric edge, top to bottom
    for scale, margin in ((1.0, 4), (2.0, 8)):
        core.roi_scale = scale
        amap, score = core(frame)
        assert amap[..., : 16 + margin].abs().max() == 0 and (amap[..., 16 + margin :] > 0).all()
        assert score == amap.amax()
