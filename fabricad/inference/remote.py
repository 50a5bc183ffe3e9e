"""Backends that run the model in a serving engine elsewhere: Triton Inference Server or Ray Serve.

They take and return exactly what the local backends do (a uint8 NHWC batch in; maps and scores
out), so tiling, thresholds, regions, the REST API and the camera pipeline stay in the service and
do not know where the network runs. What is not installed or not reachable fails with the reason.
"""

from __future__ import annotations

import io

import numpy as np

from fabricad.errors import FabricadError
from fabricad.inference.bundle import BundleMeta


class TritonBackend:
    """A model in a Triton model repository (`fabricad export --format triton`), by HTTP or gRPC."""

    def __init__(self, url: str, meta: BundleMeta, model_name: str | None = None, protocol: str = "http",
                 timeout_s: float = 30.0):
        try:
            if protocol == "grpc":
                import tritonclient.grpc as client
            else:
                import tritonclient.http as client
        except ImportError as exc:
            raise FabricadError(f"the Triton engine needs tritonclient: pip install 'tritonclient[{protocol}]' ({exc})") from None
        self.client_module = client
        self.meta = meta
        self.model_name = model_name or meta.name
        self.url = url.removeprefix("http://").removeprefix("grpc://") if protocol == "grpc" else url.removeprefix("http://")
        self.timeout_s = timeout_s
        try:
            self.client = client.InferenceServerClient(url=self.url)
            ready = self.client.is_model_ready(self.model_name)
        except Exception as exc:  # the client raises its own exception types per protocol
            raise FabricadError(f"Triton at {url} is not reachable: {exc}") from None
        if not ready:
            raise FabricadError(f"Triton at {url} has no ready model {self.model_name!r} (is it in the model repository?)")
        self.name = f"triton[{protocol}]"
        self.input_size = (meta.input.height, meta.input.width)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.client_module
        image = c.InferInput("image", list(images.shape), "UINT8")
        image.set_data_from_numpy(np.ascontiguousarray(images))
        outputs = [c.InferRequestedOutput("anomaly_map"), c.InferRequestedOutput("score")]
        result = self.client.infer(self.model_name, [image], outputs=outputs)
        return result.as_numpy("anomaly_map")[:, 0].astype(np.float32), result.as_numpy("score").astype(np.float32)


def encode_batch(images: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(images, dtype=np.uint8), allow_pickle=False)
    return buffer.getvalue()


def decode_batch(data: bytes, max_bytes: int = 512 * 1024 * 1024) -> np.ndarray:
    """A batch sent by `encode_batch`; never unpickles, refuses anything but uint8 NHWC RGB."""
    if len(data) > max_bytes:
        raise FabricadError("batch too large")
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise FabricadError(f"expected a uint8 (B, H, W, 3) batch, got {array.dtype} {array.shape}")
    return array


def encode_result(maps: np.ndarray, scores: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, maps=maps.astype(np.float32), scores=scores.astype(np.float32))
    return buffer.getvalue()


class RayServeBackend:
    """A model served by `fabricad engine ray` (Ray Serve replicas with request batching), over HTTP."""

    def __init__(self, url: str, meta: BundleMeta, model_name: str | None = None, timeout_s: float = 30.0):
        import httpx

        self.meta = meta
        self.model_name = model_name or meta.name  # the service passes its registry name (the folder's)
        self.endpoint = f"{url.rstrip('/')}/{self.model_name}"
        self.http = httpx.Client(timeout=timeout_s)
        try:
            probe = self.http.get(f"{self.endpoint}/-/meta")
        except httpx.TransportError as exc:
            raise FabricadError(f"Ray Serve at {url} is not reachable: {exc}") from None
        if probe.status_code != 200:
            raise FabricadError(f"Ray Serve at {url} does not serve {self.model_name!r} (HTTP {probe.status_code})")
        served = probe.json()
        if served.get("sha256") != meta.sha256:
            raise FabricadError(f"Ray Serve runs a different {self.model_name!r} (graph {served.get('sha256', '?')[:12]}, "
                                f"this service has {meta.sha256[:12]}): deploy the same bundle to both")
        self.name = "ray-serve"
        self.input_size = (meta.input.height, meta.input.width)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        response = self.http.post(self.endpoint, content=encode_batch(images),
                                  headers={"content-type": "application/x-npy"})
        if response.status_code != 200:
            raise FabricadError(f"Ray Serve answered {response.status_code}: {response.text[:300]}")
        result = np.load(io.BytesIO(response.content), allow_pickle=False)
        return result["maps"], result["scores"]
