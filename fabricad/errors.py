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
