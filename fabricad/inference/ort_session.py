"""ONNX Runtime session options shared by every session fabricad builds: the engine's bundles and
the training-time teacher alike. A module of its own, below both, so that neither reaches into
the other for it."""

from __future__ import annotations

from typing import Literal, get_args

from fabricad.errors import FabricadError

# How ONNX Runtime's worker threads wait for work. Spinning makes the many short parallel sections
# of one run fast (a Lite1 tile on two cores: 14.2 ms spinning, 15.8 ms not), but workers that
# keep spinning *between* runs burn the cores other threads need. "during_run" spins only while a
# run is active (ORT's session.force_spinning_stop): a lone caller's speed without idle burning,
# the library default. The service does not spin at all: with concurrent callers the spinning
# workers take the cores of HTTP, decoding and capture (benchmarks/service_load.py, BENCHMARKS.md).
Spinning = Literal["always", "during_run", "never"]
SPINNING: tuple[str, ...] = get_args(Spinning)


def session_options(threads: int | None = None, spinning: Spinning = "during_run"):
    """ONNX Runtime options shared by every session fabricad builds: full graph optimisation,
    `threads` intra-op threads (ORT's choice when None) and the given spinning policy."""
    import onnxruntime as ort

    if spinning not in SPINNING:
        raise FabricadError(f"spinning must be one of {', '.join(SPINNING)}, not {spinning!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if spinning == "never":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif spinning == "during_run":
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options
