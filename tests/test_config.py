import pytest

from fabricad.config import FabricadConfig
from fabricad.errors import ConfigError


def test_yaml_round_trip(tmp_path):
    config = FabricadConfig().with_overrides(["model.name=dbfad", "data.image_size=[128, 256]", "train.lr=0.001"])
    config.to_yaml(tmp_path / "c.yaml")
    loaded = FabricadConfig.from_yaml(tmp_path / "c.yaml")
    assert loaded == config
    assert loaded.data.image_size == (128, 256)
    assert loaded.model.name == "dbfad"


def test_int_image_size_means_square():
    assert FabricadConfig().with_overrides(["data.image_size=96"]).data.image_size == (96, 96)


@pytest.mark.parametrize(
    "override",
    ["train.epochs=0", "data.image_size=100", "model.name=patchcore", "train.nope=1", "nosection.x=1", "missing_equals"],
)
def test_bad_overrides_are_refused_with_a_reason(override):
    with pytest.raises(ConfigError) as info:
        FabricadConfig().with_overrides([override])
    assert str(info.value)


def test_unknown_keys_in_file_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epohcs: 5\n")
    with pytest.raises(ConfigError, match="epohcs"):
        FabricadConfig.from_yaml(path)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        FabricadConfig.from_yaml(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        FabricadConfig.from_yaml(bad)


def test_override_keeps_text_for_string_fields():
    # "02" is a fabric code, not the number 2
    assert FabricadConfig().with_overrides(["data.category=02"]).data.category == "02"
    assert FabricadConfig().with_overrides(["train.epochs=7"]).train.epochs == 7
