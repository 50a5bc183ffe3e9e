"""Frame captured → the PLC sees the stop, for MQTT, OPC UA and Modbus TCP, beside the REST round
trip, in one run.

    python -m benchmarks.line_latency --bundle runs/demo/bundle --image tile.png [--cameras 4 --fps 30 --seconds 20]

1. The real service under uvicorn with all three line outputs at once (stop rule `any`), each
   talking to a real peer on loopback: Debian's mosquitto with a paho subscriber, an asyncua
   client subscribed to each camera's `DefectCount` (the PLC's way of watching OPC UA tags), a
   pymodbus server as the PLC recording the stop coils' rising edges. `--cameras` simulated
   cameras at `--fps` each read a folder where every `--defect-every`-th frame has a defect.
   Latency per stop: the PLC's receipt minus the frame's capture time (`captured_at`, carried by
   every line message; the Nth stop of a camera on OPC UA and Modbus is matched to its Nth stop
   on MQTT, since every sink gets a camera's messages in the same order).
2. The REST round trip: as many clients as cameras, each posting the same frames at `--fps`
   (`POST /v1/inspect`), the reply being when a caller would learn of the defect.
Prints a Markdown table; --write appends it to a file. Needs mosquitto (apt-get install mosquitto)
and the `line` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

from benchmarks.common import emit, machine, percentile
from benchmarks.service_load import KEY, free_port, start_service, wait_http
from tests.plc import MOSQUITTO, Broker, ModbusPlc

STRIDE = 10  # the Modbus sink's camera_stride: camera i's stop coil is 1 + 10 i


def defect_frame(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """The frame with a hole: a dark blob an eighth of its width across."""
    rng = np.random.default_rng(seed)
    out = image.copy()
    h, w = out.shape[:2]
    r = max(w // 16, 3)
    centre = (int(rng.integers(r, w - r)), int(rng.integers(r, h - r)))
    cv2.circle(out, centre, r, (10, 10, 10), -1)
    return out


def prepare(bundle: Path, image: np.ndarray, defect: np.ndarray, every: int) -> tuple[Path, Path, list[bytes]]:
    work = Path(tempfile.mkdtemp(prefix="line-latency-"))
    models = work / "models"
    models.mkdir()
    (models / "bench").symlink_to(bundle.resolve())
    media = work / "media" / "frames"
    media.mkdir(parents=True)
    frames = [cv2.imencode(".png", defect if i == every - 1 else image)[1].tobytes() for i in range(every)]
    for i, png in enumerate(frames):
        (media / f"{i:03d}.png").write_bytes(png)
    return work, models, frames


class MqttWatcher:
    def __init__(self, port: int, prefix: str):
        import paho.mqtt.client as mqtt

        self.stops: dict[str, list[tuple[float, float, float]]] = {}  # camera → [(captured_at, judged at, received)]
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-plc")
        self.client.username_pw_set("plc", "plc-pw")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/+/stop", qos=1)
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, _client, _userdata, message) -> None:
        now = time.time()
        body = json.loads(message.payload)
        with self.lock:
            self.stops.setdefault(body["camera_id"], []).append((body["captured_at"], body["at"], now))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class OpcUaWatcher:
    """An asyncua client on its own loop, subscribed to every camera's DefectCount."""

    def __init__(self, endpoint: str, cameras: list[str]):
        self.changes: dict[str, list[tuple[int, float]]] = {c: [] for c in cameras}  # camera → [(count, received)]
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.done: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(endpoint, cameras),), daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the OPC UA client did not subscribe")

    async def _run(self, endpoint: str, cameras: list[str]) -> None:
        from asyncua import Client

        watcher = self

        class Handler:
            def datachange_notification(self, node, value, _data):
                watcher.changes[names[node.nodeid]].append((int(value), time.time()))

        async with Client(endpoint, timeout=10) as client:
            ns = await client.get_namespace_index("urn:fabricad:line")
            names = {}
            nodes = []
            for camera in cameras:
                node = await client.nodes.objects.get_child([f"{ns}:Fabricad", f"{ns}:Cameras", f"{ns}:{camera}", f"{ns}:DefectCount"])
                names[node.nodeid] = camera
                nodes.append(node)
            subscription = await client.create_subscription(5, Handler())  # 5 ms publishing interval
            await subscription.subscribe_data_change(nodes, sampling_interval=0)
            self.done = asyncio.Event()
            self.ready.set()
            await self.done.wait()

    def close(self) -> None:
        if self.done is not None:
            self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(10)


def match(reference: list[tuple[float, float, float]], seen: list[float]) -> tuple[list[float], list[float]]:
    """The i-th event seen against the i-th stop on MQTT: (since capture, since the verdict)."""
    return [s - r[0] for r, s in zip(reference, seen)], [s - r[1] for r, s in zip(reference, seen)]


def run_cameras(url: str, cameras: list[str], fps: float, seconds: float) -> tuple[int, int]:
    """`cameras` on the frames folder at `fps` for `seconds`, then stopped: (frames inferred, dropped)."""
    admin = {"X-API-Key": KEY}
    for camera in cameras:
        httpx.post(f"{url}/v1/cameras", json={"id": camera, "source": "media:frames", "fps": fps, "queue_size": 4},
                   headers=admin).raise_for_status()
    time.sleep(seconds)
    for camera in cameras:
        httpx.post(f"{url}/v1/cameras/{camera}/stop", headers=admin).raise_for_status()
    time.sleep(3)  # the last stops reach every PLC
    stats = httpx.get(f"{url}/v1/cameras").json()
    return sum(c["frames_processed"] for c in stats), sum(c["frames_dropped"] for c in stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True, help="a defect-free frame; a hole is drawn into a copy")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--defect-every", type=int, default=10, help="one frame in this many has a defect")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    if MOSQUITTO is None:
        raise SystemExit("error: needs Debian's mosquitto (apt-get install mosquitto)")
    image = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"error: cannot read {args.image}")
    work, models, frames = prepare(args.bundle, image, defect_frame(image), args.defect_every)
    cameras = [f"cam{i}" for i in range(args.cameras)]
    # 0. the same cameras on a service without line outputs: what the sinks cost the inference loop
    bare, bare_port = start_service(models, work, name="bare")
    try:
        wait_http(f"http://127.0.0.1:{bare_port}/readyz", 120, bare)
        bare_inferred, _ = run_cameras(f"http://127.0.0.1:{bare_port}", cameras, args.fps, args.seconds)
    finally:
        bare.terminate()
        bare.wait(20)
    broker = Broker(work / "broker", {"plc": "plc-pw", "fabricad": "svc-pw"})
    plc = ModbusPlc()
    opcua_port = free_port()
    outputs = [
        {"name": "mqtt", "port": broker.port, "topic_prefix": "bench", "username": "fabricad", "password": "svc-pw",
         "stop_rule": {"mode": "any"}},
        {"kind": "opcua", "name": "opcua", "host": "127.0.0.1", "port": opcua_port, "allow_anonymous": True,
         "security": ["none"], "cameras": cameras, "stop_rule": {"mode": "any"}},
        {"kind": "modbus", "name": "modbus", "port": plc.port, "cameras": cameras, "camera_stride": STRIDE,
         "pulse_ms": 20, "stop_rule": {"mode": "any"}},
    ]
    env = {"FABRICAD_LINE_OUTPUTS": json.dumps(outputs), "FABRICAD_LINE_OUTBOX_DIR": str(work / "outbox")}
    server, port = start_service(models, work, env=env)
    url = f"http://127.0.0.1:{port}"
    mqtt = opcua = None
    try:
        wait_http(f"{url}/readyz", 120, server)
        mqtt = MqttWatcher(broker.port, "bench")
        opcua = OpcUaWatcher(f"opc.tcp://127.0.0.1:{opcua_port}/fabricad/", cameras)
        # 1. cameras → line
        inferred, dropped = run_cameras(url, cameras, args.fps, args.seconds)
        names = ("MQTT", "OPC UA", "Modbus TCP")
        latency: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
        counts = dict.fromkeys(names, 0)
        reference_total = 0
        for i, camera in enumerate(cameras):
            reference = mqtt.stops.get(camera, [])
            reference_total += len(reference)
            # OPC UA: a notification may carry several counts at once; each count is known at its arrival
            known: list[float] = []
            for count, received in opcua.changes[camera]:
                known += [received] * (count - len(known))
            edges = [at for at, kind, address, values in plc.writes if kind == "coil" and address == 1 + STRIDE * i and values[0]]
            for name, seen in zip(names, ([r[2] for r in reference], known, edges)):
                since_capture, since_verdict = match(reference, seen)
                latency[name][0].extend(since_capture)
                latency[name][1].extend(since_verdict)
                counts[name] += len(seen)

        # 2. REST: the same frames posted at the same rate by as many clients
        rest: list[float] = []
        lock = threading.Lock()

        def client(offset: int) -> None:
            period, local = 1 / args.fps, []
            with httpx.Client(timeout=30) as http:
                start = time.perf_counter() + offset * period / len(cameras)
                n = 0
                while time.perf_counter() - start < args.seconds:
                    slot = start + n * period
                    time.sleep(max(0.0, slot - time.perf_counter()))
                    png = frames[n % len(frames)]
                    sent = time.perf_counter()
                    answer = http.post(f"{url}/v1/inspect", content=png, headers={"content-type": "image/png"})
                    answer.raise_for_status()
                    if png is frames[-1]:  # the defect frames, as on the line
                        local.append(time.perf_counter() - sent)
                    n += 1
            with lock:
                rest.extend(local)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(cameras))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for closer in (mqtt, opcua):
            if closer is not None:
                closer.close()
        server.terminate()
        server.wait(20)
        plc.stop()
        broker.stop()

    rest_p50 = percentile(rest, 50)
    lines = [f"### Line latency: frame captured → PLC sees the stop ({machine()})", "",
             f"`python -m benchmarks.line_latency --bundle {args.bundle} --image {args.image} --cameras {args.cameras} "
             f"--fps {args.fps:g} --seconds {args.seconds:g} --defect-every {args.defect_every}`: {args.cameras} cameras × "
             f"{args.fps:g} fps asked, {inferred} frames inferred, {dropped} dropped by the cameras' queues, "
             f"{reference_total} stops (every {args.defect_every}th frame a defect, stop rule `any`), all three sinks at once; "
             f"the same cameras on the service without line outputs: {bare_inferred} frames inferred "
             f"(with / without: {inferred / max(bare_inferred, 1):.3f}).",
             "", "| path | stops seen | capture → PLC p50 / p99 ms | p50 vs REST | verdict → PLC p50 / p99 ms |",
             "|---|---|---|---|---|"]
    for name, (since_capture, since_verdict) in latency.items():
        lines.append(f"| camera → {name} | {counts[name]} | {percentile(since_capture, 50):.1f} / "
                     f"{percentile(since_capture, 99):.1f} | {percentile(since_capture, 50) / rest_p50:.2f} | "
                     f"{percentile(since_verdict, 50):.1f} / {percentile(since_verdict, 99):.1f} |")
    lines.append(f"| REST round trip (`POST /v1/inspect`, defect frames) | {len(rest)} | {rest_p50:.1f} / "
                 f"{percentile(rest, 99):.1f} | 1.00 | |")
    emit("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
