"""A Triton Inference Server model repository from a bundle.

    REPO/<name>/config.pbtxt      platform, inputs/outputs read from the graph, dynamic batching,
                                  instance groups (from the bundle's `serving` section)
    REPO/<name>/1/model.onnx      the bundle's graph (or model.plan, a TensorRT engine, when built)
    REPO/<name>/1/model.json      the bundle's metadata: fabricad's Triton client reads threshold,
                                  tiling and input size from here, so both sides share one truth

The version folder is itself a valid fabricad bundle.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx

from fabricad.errors import FabricadError
from fabricad.inference.bundle import read_bundle

ONNX_TO_TRITON = {
    onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT32: "TYPE_INT32",
}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def graph_io(model_path: Path) -> tuple[list[dict], list[dict]]:
    """Names, Triton types and shapes (-1 for a dynamic axis) of the graph's inputs and outputs."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initialisers = {i.name for i in graph.initializer}

    def describe(values) -> list[dict]:
        out = []
        for v in values:
            if v.name in initialisers:
                continue
            t = v.type.tensor_type
            if t.elem_type not in ONNX_TO_TRITON:
                raise FabricadError(f"{v.name}: ONNX type {t.elem_type} has no Triton equivalent")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append({"name": v.name, "data_type": ONNX_TO_TRITON[t.elem_type], "dims": dims})
        return out

    return describe(graph.input), describe(graph.output)


def config_pbtxt(name: str, platform: str, inputs: list[dict], outputs: list[dict], serving, kind: str) -> str:
    """Triton's text-format ModelConfig. With max_batch_size > 0, dims exclude the batch axis."""
    def tensor(t: dict) -> str:
        dims = t["dims"][1:]
        # A per-image scalar (shape [batch]) is written as [1] reshaped to [], as Triton requires.
        shape = f"dims: [ {', '.join(map(str, dims))} ]" if dims else "dims: [ 1 ]\n    reshape: { shape: [ ] }"
        return f'  {{\n    name: "{t["name"]}"\n    data_type: {t["data_type"]}\n    {shape}\n  }}'

    def tensors(label: str, items: list[dict]) -> str:
        return f"{label} [\n" + ",\n".join(tensor(t) for t in items) + "\n]\n"

    preferred = [b for b in serving.preferred_batch_sizes if b <= serving.max_batch_size]
    return (
        f'name: "{name}"\nplatform: "{platform}"\nmax_batch_size: {serving.max_batch_size}\n'
        + tensors("input", inputs) + tensors("output", outputs)
        + "dynamic_batching {\n"
        + (f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n" if preferred else "")
        + f"  max_queue_delay_microseconds: {serving.max_queue_delay_us}\n}}\n"
        + f"instance_group [\n  {{\n    count: {serving.instances}\n    kind: {kind}\n  }}\n]\n"
    )


def write_repository(bundle: Path, repository: Path, name: str | None = None, plan: Path | None = None) -> Path:
    """Turn an exported bundle folder into `repository/<name>/`; returns the model folder."""
    import shutil

    meta, model_path = read_bundle(bundle)
    name = name or meta.name
    if not SAFE_NAME.match(name):
        raise FabricadError(f"invalid Triton model name {name!r}")
    inputs, outputs = graph_io(model_path)
    for t in outputs:  # the exporter leaves the map's height and width symbolic; they are the input's
        if t["name"] == "anomaly_map" and len(t["dims"]) == 4:
            t["dims"] = [t["dims"][0], 1, meta.input.height, meta.input.width]
    if not inputs or inputs[0]["dims"][0] != -1:
        raise FabricadError("the graph's batch axis must be dynamic for Triton's batcher")
    folder = repository / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    if bundle.resolve() != version.resolve():
        for item in bundle.iterdir():
            if item.is_file():
                shutil.copy2(item, version / item.name)
    platform = "onnxruntime_onnx"
    if plan is not None:
        shutil.copy2(plan, version / "model.plan")
        platform = "tensorrt_plan"
    device = meta.serving.device
    kind = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}.get(device, "KIND_GPU" if plan is not None else "KIND_AUTO")
    (folder / "config.pbtxt").write_text(config_pbtxt(name, platform, inputs, outputs, meta.serving, kind))
    return folder
