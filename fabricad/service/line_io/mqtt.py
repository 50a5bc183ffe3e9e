"""The MQTT sink: one JSON message per defect, per verdict change and per stop, QoS 1, each with
an `id` a PLC can drop repeats by; a retained status topic; roll start/end and encoder readings
subscribed from the PLC. Messages go out from the sink's outbox on its own thread, in order, and
leave it only once the broker has acknowledged them (PUBACK): a broker that is down or slow
holds nothing up, and what it missed is delivered when it is back.

Topics under `topic_prefix` (default `fabricad`):

    out  {prefix}/{camera}/defect | verdict | stop      QoS 1
         {prefix}/{camera}/status                        retained: the camera's state (running, reconnecting, …)
         {prefix}/status                                 retained: online / offline (the will)
    in   {prefix}/roll/start   a roll (the body of POST /v1/rolls)
         {prefix}/roll/end     {"id": ..., "length_m": optional}
         {prefix}/encoder      {"roll_id": ..., "along_m": ...}
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from fabricad.service.line_io.base import SinkSpecBase
from fabricad.service.line_io.outbox import Outbox

log = logging.getLogger(__name__)
COMMANDS = ("roll/start", "roll/end", "encoder")


class MqttSinkSpec(SinkSpecBase):
    kind: Literal["mqtt"] = "mqtt"
    host: str = Field("127.0.0.1", max_length=253)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: str = Field("fabricad", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    queue_limit: int = Field(10_000, ge=1, le=10_000_000, description="messages kept while the broker is away")
    keepalive_s: int = Field(10, ge=2, le=3600)
    subscribe: bool = Field(True, description="take roll start/end and encoder readings from the broker")


class MqttSink:
    """State: `connecting`, `connected`, `disconnected` (retrying), `stopped`."""

    RESEND_S = 10.0
    """A message handed to the client and not acknowledged this long while connected is sent again."""

    def __init__(self, spec: MqttSinkSpec, outbox_dir: Path, on_command: Callable[[str, dict], None]):
        import paho.mqtt.client as mqtt  # only where a sink is configured

        self.spec = spec
        self.outbox = Outbox(outbox_dir / f"{spec.name}.sqlite3", spec.queue_limit)
        self.on_command = on_command
        self.state, self.last_error = "connecting", None
        self.sent = self.resent = 0
        # PUBACKs, as paho's network thread reports them. A queue, not a lock the sender holds: paho
        # calls on_publish holding its own message lock, which publish() takes too, so a lock
        # held across publish() and wanted by on_publish deadlocks both threads.
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fabricad-{spec.name}", clean_session=True)
        if spec.username:
            client.username_pw_set(spec.username, spec.password.get_secret_value() if spec.password else None)
        client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        client.will_set(self.topic("status"), json.dumps({"state": "offline"}), qos=1, retain=True)
        client.on_connect, client.on_disconnect, client.on_message = self._connected, self._disconnected, self._message
        client.on_publish = self._acknowledged
        self.client = client
        self._sender = threading.Thread(target=self._send_loop, name=f"mqtt-{spec.name}", daemon=True)

    def topic(self, *parts: str) -> str:
        return "/".join((self.spec.topic_prefix, *parts))

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.spec.host, self.spec.port, self.spec.keepalive_s)
        self.client.loop_start()
        self._sender.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self.state == "connected":
            self.client.publish(self.topic("status"), json.dumps({"state": "offline"}), qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()
        self._sender.join(5)
        self.outbox.close()
        self.state = "stopped"

    def status(self) -> dict:
        return {"name": self.spec.name, "kind": "mqtt", "target": f"{self.spec.host}:{self.spec.port}",
                "state": self.state, "queued": len(self.outbox), "sent": self.sent, "resent": self.resent,
                "dropped": self.outbox.dropped, "last_error": self.last_error}

    # --- out -----------------------------------------------------------------------------------
    def offer(self, kind: str, camera_id: str, payload: dict) -> None:
        """Queue a message (never blocks on the network: the sender thread delivers it)."""
        self.outbox.put(self.topic(camera_id, kind), payload, retain=kind == "status")
        self._wake.set()

    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while self.state == "connected" and not self._stopping.is_set():
                batch = self.outbox.peek(64)
                if not batch:
                    break
                for seq, topic, payload, retain in batch:
                    if not self._deliver(topic, payload, retain):
                        return  # stopping: what was not acknowledged stays in the outbox for the next start
                    self.outbox.ack(seq)
                    self.sent += 1

    def _deliver(self, topic: str, payload: str, retain: bool) -> bool:
        """Hand one message to the client and wait for the broker's PUBACK. Handed over once: if
        the connection drops meanwhile, the client keeps it and sends it again itself after
        reconnecting (same message id, MQTT's DUP flag), so it is not sent twice from here. Only
        if no acknowledgement comes within RESEND_S of being connected is it handed over again
        (counted in `resent`: the PLC may then see it twice, with the same `id`); the PUBACK of
        any copy then delivers it. An acknowledgement that comes before publish() returns waits
        in the queue, so it is not missed."""
        mine = {self.client.publish(topic, payload, qos=1, retain=retain).mid}
        waited = 0.0
        while True:
            try:
                if self._acks.get(timeout=0.1) in mine:
                    return True
                continue  # another message's: the status published on connecting, a copy given up on
            except queue.Empty:
                pass
            if self._stopping.is_set():
                return False
            waited = waited + 0.1 if self.state == "connected" else 0.0
            if waited >= self.RESEND_S:
                self.resent += 1
                mine.add(self.client.publish(topic, payload, qos=1, retain=retain).mid)
                waited = 0.0

    def _acknowledged(self, _client, _userdata, mid, _reason_code, _properties) -> None:
        """PUBACK (or, for the status messages, sent). Never blocks: paho holds its message lock
        while it calls this. Message ids are reused only after 65 535 others, and every delivery
        drains the queue, so an old id is gone long before it could come back."""
        self._acks.put(mid)

    # --- broker events (paho's network thread) ---------------------------------------------------
    def _connected(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self.state, self.last_error = "disconnected", f"connect refused: {reason_code}"
            return
        self.state, self.last_error = "connected", None
        client.publish(self.topic("status"), json.dumps({"state": "online"}), qos=1, retain=True)
        if self.spec.subscribe:
            client.subscribe([(self.topic(c), 1) for c in COMMANDS])
        self._wake.set()
        log.info("line output %s: connected to %s:%s", self.spec.name, self.spec.host, self.spec.port)

    def _disconnected(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if self._stopping.is_set():
            return
        self.state, self.last_error = "disconnected", f"connection lost: {reason_code}"
        log.warning("line output %s: %s; retrying, messages are kept (%d queued)",
                    self.spec.name, self.last_error, len(self.outbox))

    def _message(self, _client, _userdata, message) -> None:
        command = message.topic[len(self.spec.topic_prefix) + 1:]
        try:
            body = json.loads(message.payload)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            self.on_command(command, body)
        except Exception as exc:  # a bad command from the PLC must not end the sink; say why on the broker
            self.last_error = f"{command}: {exc}"
            log.warning("line input %s: %s refused: %s", self.spec.name, command, exc)
            self.client.publish(self.topic("errors"), json.dumps({"command": command, "error": str(exc)}), qos=1)
