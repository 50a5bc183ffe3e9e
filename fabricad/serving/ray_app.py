"""Ray Serve deployment of fabricad bundles: replicas with request batching, autoscaled on queue
length. One deployment per bundle, reached at `/<name>` (POST an npy batch, get an npz back;
GET `/<name>/-/meta` tells which graph runs).

    fabricad engine ray --models models --replicas 2           # fixed replicas
    fabricad engine ray --models models --max-replicas 8       # autoscaling on ongoing requests
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fabricad.errors import FabricadError
from fabricad.inference.bundle import read_bundle


def require_ray():
    try:
        from ray import serve  # noqa: F401
    except ImportError as exc:
        raise FabricadError(f"the Ray engine needs Ray Serve: pip install 'ray[serve]' ({exc})") from None


def build_app(bundle: Path, name: str | None = None, replicas: int = 1, max_replicas: int | None = None,
              threads: int = 1, providers: list[str] | None = None, target_ongoing: float = 2.0):
    """The Serve application for one bundle. With `max_replicas`, Serve adds replicas while more
    than `target_ongoing` requests wait per replica (queue length), down to `replicas`."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from fabricad.inference.remote import decode_batch, encode_result

    meta, _ = read_bundle(bundle)
    name = name or bundle.name  # the folder name, as the service's model registry names it
    scaling = ({"num_replicas": replicas} if not max_replicas else
               {"autoscaling_config": {"min_replicas": replicas, "max_replicas": max_replicas,
                                       "target_ongoing_requests": target_ongoing}})

    @serve.deployment(name=name, ray_actor_options={"num_cpus": threads}, max_ongoing_requests=64, **scaling)
    class FabricadModel:
        def __init__(self, path: str):
            from fabricad.inference.backends import OnnxBackend

            self.backend = OnnxBackend(path, providers=providers, threads=threads)

        @serve.batch(max_batch_size=meta.serving.max_batch_size, batch_wait_timeout_s=meta.serving.max_queue_delay_us / 1e6)
        async def infer(self, batches: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
            sizes = [len(b) for b in batches]
            maps, scores = self.backend(np.concatenate(batches))
            out, start = [], 0
            for size in sizes:
                out.append((maps[start:start + size], scores[start:start + size]))
                start += size
            return out

        async def __call__(self, request: Request):
            if request.url.path.rstrip("/").endswith("/-/meta"):
                return JSONResponse({"name": name, "sha256": meta.sha256, "backend": self.backend.name})
            try:
                images = decode_batch(await request.body())
            except (FabricadError, ValueError) as exc:
                return Response(str(exc), status_code=400)
            maps, scores = await self.infer(images)
            return Response(encode_result(maps, scores), media_type="application/octet-stream")

    return FabricadModel.bind(str(bundle))


def serve_bundles(models_dir: Path, host: str = "127.0.0.1", port: int = 8100, **options) -> list[str]:
    """Deploy every bundle in `models_dir` on a local Ray instance; returns the route names."""
    require_ray()
    import ray
    from ray import serve

    bundles = sorted(p for p in Path(models_dir).iterdir() if (p / "model.json").is_file()) if Path(models_dir).is_dir() else []
    if not bundles:
        raise FabricadError(f"no bundles in {models_dir}")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    names = []
    for bundle in bundles:  # routed by folder name, as the service's registry names models
        serve.run(build_app(bundle, bundle.name, **options), name=bundle.name, route_prefix=f"/{bundle.name}", blocking=False)
        names.append(bundle.name)
    return names
