"""The line's side for the line I/O tests and the latency benchmark: a real MQTT broker (Debian's
mosquitto) and a PLC as a real pymodbus TCP server on loopback that records every write the
service makes to it."""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.live_server import _free_port, wait_for_port

MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


class Broker:
    """mosquitto on a loopback port with password accounts (no anonymous clients). `users`: who
    may connect; `allow(users)` changes that while it runs (SIGHUP reloads the password file)."""

    def __init__(self, folder: Path, users: dict[str, str], port: int | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port = folder, port or _free_port()
        self.allow(users, reload=False)
        config = folder / "mosquitto.conf"
        # `user`: as root mosquitto would switch to its own user, which cannot read the test's folder
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {folder / 'passwd'}\n"
                          f"user {getpass.getuser()}\n")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, "mosquitto")

    def allow(self, users: dict[str, str], reload: bool = True) -> None:
        passwd = self.folder / "passwd"
        passwd.write_text("")
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
        if reload:
            self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)


class ModbusPlc:
    """The PLC as a pymodbus TCP server on loopback: its memory (coils, holding registers) and a
    record of every write the service made to it. `restart()` is a PLC that rebooted: same port,
    memory cleared."""

    def __init__(self, port: int | None = None):
        self.port = port or _free_port()
        self.writes: list[tuple[float, str, int, list]] = []  # (when, "coil" | "register", address, values)
        self.lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        import asyncio

        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        def block(bits: bool) -> list:
            return [SimData(0, count=64, values=False if bits else 0, datatype=DataType.BITS if bits else DataType.REGISTERS)]

        device = SimDevice(id=1, simdata=(block(True), block(True), block(False), block(False)))
        async def serve() -> None:  # pymodbus builds its server on a running loop
            self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port), trace_pdu=self._trace)
            await self.server.serve_forever()

        self.loop = asyncio.new_event_loop()
        self.loop.create_task(serve())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)  # stopped by stop()
        self.thread.start()
        wait_for_port(self.port, "the Modbus server")

    def _trace(self, sending: bool, pdu):
        name = type(pdu).__name__
        if not sending and name in ("WriteSingleCoilRequest", "WriteSingleRegisterRequest"):
            with self.lock:
                kind = "coil" if "Coil" in name else "register"
                self.writes.append((time.time(), kind, pdu.address, list(pdu.bits if kind == "coil" else pdu.registers)))
        return pdu

    def pulses(self, coil: int) -> list[float]:
        """How long each pulse on `coil` lasted (on → off), in seconds."""
        with self.lock:
            edges = [(at, values[0]) for at, kind, address, values in self.writes if kind == "coil" and address == coil]
        return [off - on for (on, up), (off, down) in zip(edges, edges[1:]) if up and not down]

    def register(self, address: int) -> int | None:
        with self.lock:
            last = [values[0] for _, kind, a, values in self.writes if kind == "register" and a == address]
        return last[-1] if last else None

    def set_encoder(self, address: int, count: int) -> None:
        """The PLC's own program updating its encoder count (through a client of its own here)."""
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient("127.0.0.1", port=self.port)
        assert client.connect()
        assert not client.write_registers(address, [count >> 16, count & 0xFFFF]).isError()
        client.close()

    def stop(self) -> None:
        import asyncio

        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def restart(self) -> None:
        self.stop()
        with self.lock:
            self.writes.clear()
        self._start()

