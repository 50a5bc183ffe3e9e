"""Prometheus metrics, on a registry owned by the app (no process-global state)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CAMERA_HEALTH = (  # a camera status's `health` key → the gauge that shows it (GenICam cameras)
    ("frames_lost", "fabricad_camera_frames_lost", "Frames (line-scan: buffers) lost, by the camera's block counter"),
    ("lines_lost", "fabricad_camera_lines_lost", "Line-scan lines lost: fabric not inspected"),
    ("buffers_incomplete", "fabricad_camera_buffers_incomplete", "Buffers that came with packets missing"),
    ("acquired_fps", "fabricad_camera_acquired_fps", "Buffers per second arriving from the camera"),
    ("temperature_c", "fabricad_camera_temperature_celsius", "The camera's DeviceTemperature"),
)


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
        self.camera_frames = Gauge("fabricad_camera_frames_processed", "Frames inferred per camera", ["camera"], registry=self.registry)
        self.camera_dropped = Gauge("fabricad_camera_frames_dropped", "Frames dropped under overload per camera", ["camera"], registry=self.registry)
        self.camera_queue = Gauge("fabricad_camera_queue_depth", "Frames waiting per camera", ["camera"], registry=self.registry)
        self.camera_health = {key: Gauge(name, text, ["camera"], registry=self.registry) for key, name, text in CAMERA_HEALTH}
        self.inspect_in_flight = Gauge("fabricad_inspect_in_flight", "Uploads being inspected now", registry=self.registry)
        self.inspect_waiting = Gauge("fabricad_inspect_queue_depth", "Uploads waiting for an inspect worker", registry=self.registry)
        self.model_info = Gauge("fabricad_active_model", "1 for the active model", ["model", "version"], registry=self.registry)
        self.line_connected = Gauge("fabricad_line_connected", "1 while a line output (MQTT broker) is connected",
                                    ["sink"], registry=self.registry)
        self.line_queued = Gauge("fabricad_line_queued_messages", "Messages waiting in a line output's outbox",
                                 ["sink"], registry=self.registry)
        self.line_sent = Counter("fabricad_line_messages_sent", "Messages a line output's broker acknowledged",
                                 ["sink"], registry=self.registry)
        self.line_dropped = Counter("fabricad_line_messages_dropped", "Messages dropped from a full line outbox",
                                    ["sink"], registry=self.registry)
        self._line_seen: dict[tuple[str, str], int] = {}

    def render(self, cameras: list[dict] | None = None, uploads: tuple[int, int] = (0, 0),
               line: list[dict] | None = None) -> bytes:
        """`uploads`: (being inspected, waiting), `line`: the line outputs' status, read when scraped."""
        for sink in line or []:
            self.line_connected.labels(sink["name"]).set(int(sink["state"] == "connected"))
            self.line_queued.labels(sink["name"]).set(sink["queued"])
            for key, counter in (("sent", self.line_sent), ("dropped", self.line_dropped)):
                seen = self._line_seen.get((sink["name"], key), 0)
                if sink[key] > seen:
                    counter.labels(sink["name"]).inc(sink[key] - seen)
                self._line_seen[(sink["name"], key)] = sink[key]
        self.inspect_in_flight.set(uploads[0])
        self.inspect_waiting.set(uploads[1])
        for status in cameras or []:
            self.camera_frames.labels(status["id"]).set(status["frames_processed"])
            self.camera_dropped.labels(status["id"]).set(status["frames_dropped"])
            self.camera_queue.labels(status["id"]).set(status["queue_depth"])
            health = status.get("health") or {}
            for key, gauge in self.camera_health.items():
                if health.get(key) is not None:
                    gauge.labels(status["id"]).set(health[key])
        return generate_latest(self.registry)
