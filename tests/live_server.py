"""A real service for tests: `uvicorn fabricad.service.app:create_app --factory` in a child process
on loopback, with its own SQLite file and image store; and the waits the tests share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

from tests.databases import database_url

ADMIN, OPERATOR = "admin-key-123", "operator-key-456"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 20, what: str = "condition", every: float = 0.05):
    """`condition()`'s first truthy value within `timeout` seconds, else an AssertionError naming `what`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_port(port: int, what: str, timeout: float = 10) -> None:
    """Until something listens on the loopback `port` (a broker, a PLC), else RuntimeError."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


class Server:
    """`uvicorn fabricad.service.app:create_app --factory` in a child process."""

    def __init__(self, models: Path, workdir: Path, require_ready: bool = True, **env: str):
        """Returns once /readyz answers 200 (or, with `require_ready=False`, answers at all)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "FABRICAD_MODELS_DIR": str(models),
            "FABRICAD_DATABASE_URL": database_url(workdir),
            "FABRICAD_IMAGE_STORE": str(workdir / "images"),
            "FABRICAD_REPORT_DIR": str(workdir / "reports"),
            "FABRICAD_API_KEYS": f'{{"{ADMIN}": "admin", "{OPERATOR}": "operator"}}',
            "FABRICAD_THREADS": "1",
            **env,
        }
        self.log = open(workdir / f"server-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fabricad.service.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(self.port)],
            env=environment, stdout=self.log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
        )
        deadline = time.time() + 180  # seconds on an idle machine; generous for a loaded CI box
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200 or not require_ready:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not become ready; log: {Path(self.log.name).read_text()[-2000:]}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
