"""Prometheus metrics, on a registry owned by the app (no process-global state).

Two kinds: what the service counts as it works (latency, inspections, defects: instrumented
directly), and what its parts keep themselves — cameras, uploads in flight, line outputs, the
active model — read from a `Scrape` snapshot when Prometheus scrapes, and exported with the
types they are: counts as counters (`*_total`), levels as gauges, the model as `*_info`.
Process and platform collectors (CPU, memory, file descriptors, Python version) come with it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# a camera status's field → (metric, help); counters get `_total` on exposition
CAMERA_COUNTERS = (
    ("frames_captured", "fabricad_camera_frames_captured", "Frames a camera delivered"),
    ("frames_processed", "fabricad_camera_frames_processed", "Frames inferred"),
    ("frames_dropped", "fabricad_camera_frames_dropped", "Frames dropped from a full camera queue (overload)"),
    ("defects", "fabricad_camera_defects", "Frames judged DEFECT"),
)
CAMERA_HEALTH_COUNTERS = (  # from `health` (GenICam cameras)
    ("frames_lost", "fabricad_camera_frames_lost", "Frames (line-scan: buffers) lost, by the camera's block counter"),
    ("lines_lost", "fabricad_camera_lines_lost", "Line-scan lines lost: fabric not inspected"),
    ("buffers_incomplete", "fabricad_camera_buffers_incomplete", "Buffers that came with packets missing"),
)
CAMERA_HEALTH_GAUGES = (
    ("acquired_fps", "fabricad_camera_acquired_fps", "Buffers per second arriving from the camera"),
    ("temperature_c", "fabricad_camera_temperature_celsius", "The camera's DeviceTemperature"),
)
LINE_COUNTERS = (
    ("sent", "fabricad_line_messages_sent", "Messages a line output delivered (MQTT: acknowledged)"),
    ("resent", "fabricad_line_messages_resent", "Messages sent again after no acknowledgement"),
    ("dropped", "fabricad_line_messages_dropped", "Messages dropped: outbox full, or a Modbus pulse too late"),
)


@dataclass
class Scrape:
    """The service's state at a scrape."""

    cameras: list[dict] = field(default_factory=list)
    uploads: tuple[int, int] = (0, 0)
    """(being inspected, waiting for a worker)"""
    line: list[dict] = field(default_factory=list)
    model: tuple[str, str] | None = None
    """(name, version) of the active model"""


class _ScrapeCollector:
    def __init__(self) -> None:
        self.scrape = Scrape()

    def collect(self):
        s = self.scrape
        up = GaugeMetricFamily("fabricad_camera_up", "1 while a camera delivers frames (state running)", labels=["camera"])
        queue = GaugeMetricFamily("fabricad_camera_queue_depth", "Frames waiting per camera", labels=["camera"])
        counters = {key: CounterMetricFamily(name, text, labels=["camera"])
                    for key, name, text in CAMERA_COUNTERS + CAMERA_HEALTH_COUNTERS}
        gauges = {key: GaugeMetricFamily(name, text, labels=["camera"]) for key, name, text in CAMERA_HEALTH_GAUGES}
        for status in s.cameras:
            camera, health = [status["id"]], status.get("health") or {}
            up.add_metric(camera, int(status["state"] == "running"))
            queue.add_metric(camera, status["queue_depth"])
            for key, family in counters.items():
                value = status.get(key, health.get(key))
                if value is not None:
                    family.add_metric(camera, value)
            for key, family in gauges.items():
                if health.get(key) is not None:
                    family.add_metric(camera, health[key])
        yield from (up, queue, *counters.values(), *gauges.values())

        in_flight = GaugeMetricFamily("fabricad_inspect_in_flight", "Uploads being inspected now")
        in_flight.add_metric([], s.uploads[0])
        waiting = GaugeMetricFamily("fabricad_inspect_queue_depth", "Uploads waiting for an inspect worker")
        waiting.add_metric([], s.uploads[1])
        yield from (in_flight, waiting)

        model = InfoMetricFamily("fabricad_model", "The active model", labels=["model", "version"])
        if s.model is not None:
            model.add_metric(list(s.model), {})
        yield model

        connected = GaugeMetricFamily("fabricad_line_connected", "1 while a line output is connected", labels=["sink"])
        queued = GaugeMetricFamily("fabricad_line_queued_messages", "Messages waiting in a line output's outbox", labels=["sink"])
        line = {key: CounterMetricFamily(name, text, labels=["sink"]) for key, name, text in LINE_COUNTERS}
        for sink in s.line:
            connected.add_metric([sink["name"]], int(sink["state"] == "connected"))
            queued.add_metric([sink["name"]], sink["queued"])
            for key, family in line.items():
                family.add_metric([sink["name"]], sink[key])
        yield from (connected, queued, *line.values())


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "fabricad_inspect_latency_seconds", "Inference latency per image", ["model"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.inspections = Counter("fabricad_inspections_total", "Images inspected", ["model", "verdict"], registry=self.registry)
        self.rejected = Counter("fabricad_rejected_total", "Requests refused", ["reason"], registry=self.registry)
        self.defects = Counter("fabricad_defects_logged_total", "Defects written to the log", ["model"], registry=self.registry)
        self.no_fabric = Counter("fabricad_frames_without_fabric_total",
                                 "Images in which the fabric ROI saw only background (web break, end of roll)",
                                 ["model"], registry=self.registry)
        self._scraped = _ScrapeCollector()
        self.registry.register(self._scraped)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._lock = threading.Lock()

    def render(self, scrape: Scrape) -> bytes:
        with self._lock:  # one scrape's snapshot at a time
            self._scraped.scrape = scrape
            return generate_latest(self.registry)
