"""The floor under any HTTP inspection service on this machine: a bare ASGI app with no framework.

    python -m benchmarks.asgi_floor --bundle runs/bundles/fabric02 --port 8100 [--spinning never]

`POST /v1/inspect` with a raw image body (any GET answers that it is ready): read it, decode and inspect in one worker thread,
answer the verdict as JSON — no routing, validation, logging or metrics. Run on uvicorn like the
service, it shows what loopback HTTP and the hand-off to a worker thread cost by themselves, so
`service_load.py` can tell the service's own overhead from the machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvicorn

from fabricad.data.images import decode_image
from fabricad.inference.engine import InferenceEngine
from fabricad.inference.ort_session import SPINNING


def make_app(engine: InferenceEngine):
    pool = ThreadPoolExecutor(1)

    def inspect(body: bytes) -> bytes:
        result = engine.inspect(decode_image(body))
        return json.dumps({"verdict": result.as_dict()["verdict"], "score": float(result.score)}).encode()

    async def answer(send, body: bytes) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # readiness, as the service's /readyz
            await answer(send, b'{"ready": true}')
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await answer(send, await asyncio.get_running_loop().run_in_executor(pool, inspect, bytes(body)))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--spinning", choices=SPINNING, default="never")
    args = parser.parse_args()
    engine = InferenceEngine.load(args.bundle, spinning=args.spinning)
    uvicorn.run(make_app(engine), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
