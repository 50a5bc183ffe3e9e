"""Talking to the line over MQTT, against a real broker (Debian's mosquitto, started by the test)
and a real service: defects, verdict changes and stop signals reach a PLC-side client; roll
start, encoder readings and roll end come from it; a broker that goes away holds nothing up and
gets every defect when it is back. The stop rules and the outbox are tested on their own first."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from fabricad.data import load_dataset
from fabricad.data.synthetic import DEFECT_TYPES as SYNTHETIC_TYPES
from fabricad.defect_types.classifier import GEOMETRY_TYPES
from fabricad.defect_types.examples import AITEX_TYPES
from fabricad.service.line_io.modbus import (
    DEFAULT_TYPE_CODES,
    OTHER_TYPE_CODE,
    ModbusSink,
    ModbusSinkSpec,
)
from fabricad.service.line_io.outbox import Outbox
from fabricad.service.line_io.stop_rule import Sighting, StopDecider, StopRule
from tests.live_server import ADMIN, Server, _free_port, png, wait_for
from tests.plc import MOSQUITTO, Broker, ModbusPlc


def at(start_m: float, length_mm: float = 10.0) -> Sighting:
    return Sighting((start_m, start_m + length_mm / 1000))


def test_stop_rules_decide_as_mills_run_machine_stops():
    assert StopDecider(StopRule()).see(at(0.0)) is None  # `never` is the default: stopping is the mill's choice
    assert StopDecider(StopRule(mode="any")).see(at(0.0)) == "defect"
    longer = StopDecider(StopRule(mode="longer_than", longer_than_mm=100))
    assert longer.see(at(0.0, 90)) is None and "101 mm" in longer.see(at(1.0, 101))
    count = StopDecider(StopRule(mode="count_within", count=3, within_m=10))
    assert [count.see(at(m)) for m in (0.0, 4.0, 15.0, 20.0)] == [None, None, None, None]  # never 3 within 10 m
    assert count.see(at(24.0)) == "3 defects within 10 m" and count.see(at(25.0)) is None  # counts again after a stop
    running = StopDecider(StopRule(mode="running", running_m=1.0, merge_gap_mm=50))
    frames = [running.see(at(0.2 * i, 200)) for i in range(5)]  # a broken end: touching sightings, 0.2 m each
    assert frames[:4] == [None] * 4 and frames[4].startswith("running defect over 1.00 m")
    apart = StopDecider(StopRule(mode="running", running_m=1.0, merge_gap_mm=50))
    assert all(apart.see(at(0.5 * i, 200)) is None for i in range(6))  # 0.3 m gaps: separate defects


def test_the_outbox_keeps_order_bound_and_survives_a_restart(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", limit=3)
    for i in range(5):
        box.put("t", {"i": i})
    assert box.dropped == 2 and [json.loads(p)["i"] for _, _, p, _ in box.peek()] == [2, 3, 4]
    first = box.peek(1)[0][0]
    box.ack(first)
    box.close()
    again = Outbox(tmp_path / "o.sqlite3", limit=3)  # as after a restart
    assert [json.loads(p)["i"] for _, _, p, _ in again.peek()] == [3, 4]


class Plc:
    """The PLC's side: an MQTT client subscribed to everything under the prefix."""

    def __init__(self, port: int, prefix: str, user: str, password: str):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.subscribed = 0  # subscriptions the broker confirmed (one per connection)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plc-1")
        self.client.username_pw_set(user, password)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda *_: setattr(self, "subscribed", self.subscribed + 1)
        self.client.on_message = self._message
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _message(self, _client, _userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def of(self, suffix: str) -> list[dict]:
        with self.lock:
            return [body for topic, body in self.messages if topic.endswith(suffix)]

    def wait(self, suffix: str, count: int, timeout: float = 30) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.of(suffix)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(self.of(suffix))} of {count} {suffix} messages arrived: {self.messages[-5:]}")

    def send(self, topic: str, body: dict) -> None:
        self.client.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto)")
def test_defects_and_stops_reach_the_plc_rolls_come_from_it_and_a_broker_outage_loses_nothing(models_dir, fabric_category,
                                                                                               tmp_path):
    accounts = {"plc": "plc-pw", "fabricad": "svc-pw"}
    broker = Broker(tmp_path / "broker", accounts)
    prefix = "mill/loom3"
    outputs = [{"name": "plc", "port": broker.port, "topic_prefix": prefix, "stop_rule": {"mode": "any"},
                "username": "fabricad", "password": "svc-pw"}]
    server = Server(models_dir, tmp_path / "svc", FABRICAD_LINE_OUTPUTS=json.dumps(outputs),
                    FABRICAD_LINE_OUTBOX_DIR=str(tmp_path / "outbox"))
    plc = Plc(broker.port, prefix, "plc", "plc-pw")
    admin = {"X-API-Key": ADMIN}
    try:
        plc.wait("/status", 1)  # the service announced itself (retained)
        assert httpx.get(f"{server.url}/v1/line").json()[0]["state"] == "connected"
        # a camera whose device is not there: its state, retained on its status topic
        assert httpx.post(f"{server.url}/v1/cameras", json={"id": "loom9", "source": "usb:9"}, headers=admin).status_code == 201
        assert plc.wait("/loom9/status", 1)[0]["state"] == "reconnecting"
        # roll start and encoder from the PLC, as a line would drive them
        roll = {"id": "R-line", "article": "plain", "width_mm": 128, "cameras": [{"camera_id": "loom3", "mm_per_px": 1.0}]}
        plc.send(f"{prefix}/roll/start", roll)
        deadline = time.time() + 10
        while httpx.get(f"{server.url}/v1/rolls/R-line").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        plc.send(f"{prefix}/encoder", {"roll_id": "R-line", "along_m": 2.5})
        plc.send(f"{prefix}/roll/start", {"id": "bad id!"})  # refused, said on the errors topic, the sink carries on
        assert plc.wait("/errors", 1)[0]["command"] == "roll/start"

        assert httpx.put(f"{server.url}/v1/models/plain-a/threshold", json={"value": 1e-6}, headers=admin).status_code == 200
        frame = png(load_dataset(fabric_category).test[0].load())

        def inspect() -> dict:
            started = time.perf_counter()
            answer = httpx.post(f"{server.url}/v1/inspect?camera_id=loom3", content=frame,
                                headers={"content-type": "image/png"}, timeout=30)
            assert answer.status_code == 200 and time.perf_counter() - started < 10
            return answer.json()

        first = [inspect()["defect_id"] for _ in range(3)]
        defects = plc.wait("/loom3/defect", 3)
        assert [d["defect_id"] for d in defects] == first  # in order
        assert defects[0]["roll_id"] == "R-line" and defects[0]["along_m"] >= 2.5 and defects[0]["length_mm"] > 0
        assert defects[0]["type"] in ("spot", "line_along", "line_across")  # no classifier: the geometry rules
        assert len(plc.wait("/loom3/stop", 3)) == 3 and plc.of("/loom3/verdict")[0]["verdict"] == "DEFECT"

        broker.stop()  # the broker goes away mid-stream; inspection carries on and the messages wait on disk
        during = [inspect()["defect_id"] for _ in range(3)]
        status = httpx.get(f"{server.url}/v1/line").json()[0]
        assert status["state"] == "disconnected" and status["queued"] >= 3
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'fabricad_line_connected{sink="plc"} 0.0' in metrics

        # Back on the same port; the PLC reconnects and subscribes before the service may connect,
        # so what the service sends then has a reader (an MQTT broker keeps nothing for nobody).
        subscribed = plc.subscribed
        broker = Broker(tmp_path / "broker", {"plc": "plc-pw"}, port=broker.port)
        deadline = time.time() + 20
        while plc.subscribed == subscribed and time.time() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{server.url}/v1/line").json()[0]["state"] != "connected"
        broker.allow(accounts)
        try:
            defects = plc.wait("/loom3/defect", 6, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the service says {httpx.get(f'{server.url}/v1/line').json()}") from None
        ids = [d["defect_id"] for d in defects]
        assert ids == first + during  # every defect, once each, in order
        assert len({d["id"] for d in defects}) == 6
        status = httpx.get(f"{server.url}/v1/line").json()[0]
        assert status["state"] == "connected" and status["queued"] == 0 and status["dropped"] == 0
        assert 'fabricad_line_messages_sent_total{sink="plc"}' in httpx.get(f"{server.url}/metrics").text

        plc.send(f"{prefix}/roll/end", {"id": "R-line"})
        deadline = time.time() + 10
        while httpx.get(f"{server.url}/v1/rolls/R-line").json()["status"] != "ended" and time.time() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{server.url}/v1/rolls/R-line").json()["status"] == "ended"
        # the audit log names the line controller for its roll actions, the key for the threshold
        entries = httpx.get(f"{server.url}/v1/audit", headers=admin).json()
        assert [(e["actor"], e["action"]) for e in entries if e["target"] == "R-line"] == [("line:plc", "roll.end"),
                                                                                           ("line:plc", "roll.start")]
        assert [e["actor"][:4] for e in entries if e["action"] == "threshold.set"] == ["key:"]
    finally:
        plc.close()
        server.stop()
        broker.stop()



def test_an_opc_ua_client_reads_the_tags_drives_the_roll_and_acknowledges_the_stop(models_dir, fabric_category, tmp_path):
    """The PLC as an asyncua client: Basic256Sha256 sign-and-encrypt with a user and password
    (anonymous and a wrong password refused), the camera's tags after defects, the stop request
    until acknowledged, and the roll started, advanced and ended by method calls."""
    import asyncio

    from asyncua import Client, ua
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    port = _free_port()
    outputs = [{"kind": "opcua", "name": "scada", "host": "127.0.0.1", "port": port, "users": {"plc": "s3cret"},
                "certificate_dir": str(tmp_path / "pki"), "stop_rule": {"mode": "any"}}]
    server = Server(models_dir, tmp_path / "svc", FABRICAD_LINE_OUTPUTS=json.dumps(outputs))
    admin = {"X-API-Key": ADMIN}
    # a camera whose device is not there: its state reaches the PLC
    assert httpx.post(f"{server.url}/v1/cameras", json={"id": "loom7", "source": "usb:9"}, headers=admin).status_code == 201
    frame = png(load_dataset(fabric_category).test[0].load())
    endpoint = f"opc.tcp://127.0.0.1:{port}/fabricad/"

    async def plc() -> None:
        key, cert = tmp_path / "plc-key.pem", tmp_path / "plc-cert.der"
        await setup_self_signed_certificate(key, cert, "urn:plc", "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH],
                                            {"commonName": "plc"})

        def client(user: str | None, password: str | None) -> Client:
            c = Client(endpoint, timeout=10)
            c.application_uri = "urn:plc"
            if user:
                c.set_user(user)
                c.set_password(password)
            return c

        secure = f"Basic256Sha256,SignAndEncrypt,{cert},{key}"
        for user, password in ((None, None), ("plc", "wrong")):  # refused
            c = client(user, password)
            await c.set_security_string(secure)
            with pytest.raises(Exception):
                async with c:
                    pass
        c = client("plc", "s3cret")
        await c.set_security_string(secure)
        async with c:
            ns = await c.get_namespace_index("urn:fabricad:line")
            line = await c.nodes.objects.get_child([f"{ns}:Fabricad", f"{ns}:Line"])
            roll = {"id": "R-ua", "article": "plain", "width_mm": 128, "cameras": [{"camera_id": "loom7", "mm_per_px": 1.0}]}
            await line.call_method(f"{ns}:StartRoll", json.dumps(roll))
            await line.call_method(f"{ns}:EncoderPosition", "R-ua", 4.0)
            with pytest.raises(ua.UaStatusCodeError):
                await line.call_method(f"{ns}:EncoderPosition", "no-such-roll", 1.0)
            assert httpx.put(f"{server.url}/v1/models/plain-a/threshold", json={"value": 1e-6}, headers=admin).status_code == 200
            for _ in range(2):
                answer = await asyncio.to_thread(httpx.post, f"{server.url}/v1/inspect?camera_id=loom7", content=frame,
                                                 headers={"content-type": "image/png"}, timeout=30)
                assert answer.json()["is_defect"]
            tags = await c.nodes.objects.get_child([f"{ns}:Fabricad", f"{ns}:Cameras", f"{ns}:loom7"])

            async def read(tag: str):
                return await (await tags.get_child(f"{ns}:{tag}")).read_value()

            deadline = time.time() + 10
            while await read("DefectCount") < 2 and time.time() < deadline:
                await asyncio.sleep(0.05)
            assert await read("DefectCount") == 2 and await read("Verdict") == "DEFECT"
            assert await read("RollId") == "R-ua" and await read("LastDefectAlongM") >= 4.0
            assert await read("RollPoints") > 0 and await read("LastDefectWidthMm") > 0
            while await read("CameraState") != "reconnecting" and time.time() < deadline:
                await asyncio.sleep(0.05)
            assert await read("CameraState") == "reconnecting"
            assert await read("StopRequested") is True and await read("StopReason") == "defect"
            await line.call_method(f"{ns}:AcknowledgeStop", "loom7")
            assert await read("StopRequested") is False
            await line.call_method(f"{ns}:EndRoll", "R-ua", 0.0)
        rolls = httpx.get(f"{server.url}/v1/rolls/R-ua").json()
        assert rolls["status"] == "ended" and rolls["length_m"] >= 4.0

    try:
        status = httpx.get(f"{server.url}/v1/line").json()[0]
        assert status["state"] == "connected" and status["target"] == endpoint
        asyncio.run(plc())
    finally:
        server.stop()


def test_a_modbus_plc_gets_pulses_and_registers_and_gives_the_encoder_and_an_outage_is_delivered_or_counted(
        models_dir, fabric_category, tmp_path):
    """The service as the PLC's Modbus client: a defect pulses coil 0 and a stop coil 1 for
    `pulse_ms`; verdict, score and count in holding registers; the encoder register advances
    the running roll. A PLC that reboots gets the pulses it missed and its registers again; pulses
    that would come too late are dropped and counted instead."""
    plc = ModbusPlc()
    encoder = 20
    outputs = [{"kind": "modbus", "name": "loom5-plc", "port": plc.port, "cameras": ["loom5"], "pulse_ms": 200,
                "pulse_max_age_s": 6, "encoder_register": encoder, "encoder_m_per_count": 0.001, "encoder_poll_ms": 50,
                "stop_rule": {"mode": "any"}}]
    server = Server(models_dir, tmp_path / "svc", FABRICAD_LINE_OUTPUTS=json.dumps(outputs),
                    FABRICAD_LINE_OUTBOX_DIR=str(tmp_path / "outbox"))
    admin = {"X-API-Key": ADMIN}
    frame = png(load_dataset(fabric_category).test[0].load())

    def status() -> dict:
        return httpx.get(f"{server.url}/v1/line").json()[0]

    def inspect() -> dict:
        answer = httpx.post(f"{server.url}/v1/inspect?camera_id=loom5", content=frame,
                            headers={"content-type": "image/png"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["is_defect"], answer.text
        return answer.json()

    try:
        wait_for(lambda: status()["state"] == "connected", what="the service to reach the PLC")
        roll = {"id": "R-mb", "article": "plain", "width_mm": 128, "cameras": [{"camera_id": "loom5", "mm_per_px": 1.0}]}
        assert httpx.post(f"{server.url}/v1/rolls", json=roll, headers=admin).status_code in (200, 201)
        plc.set_encoder(encoder, 3_500)  # 3.5 m
        wait_for(lambda: httpx.get(f"{server.url}/v1/rolls/R-mb").json()["length_m"] >= 3.5, what="the encoder reading")

        assert httpx.put(f"{server.url}/v1/models/plain-a/threshold", json={"value": 1e-6}, headers=admin).status_code == 200
        answers = [inspect() for _ in range(2)]
        wait_for(lambda: len(plc.pulses(1)) == 2, what="two stop pulses")
        assert len(plc.pulses(0)) == 2 and all(0.15 <= p <= 1.5 for p in plc.pulses(0) + plc.pulses(1))
        assert plc.register(0) == 1 and plc.register(2) == 2 and plc.register(1) > 0  # verdict, count, score × 1000
        assert plc.register(4) > 0  # the roll's points so far
        assert plc.register(5) == DEFAULT_TYPE_CODES[answers[-1]["regions"][0]["type"]] > 0  # the defect's type

        plc.stop()  # the PLC goes down mid-stream; inspection does not wait for it
        started = time.perf_counter()
        inspect()
        assert time.perf_counter() - started < 10
        wait_for(lambda: status()["state"] == "disconnected" and status()["queued"] == 2, what="queued pulses")
        plc.restart()  # back within pulse_max_age_s, its memory lost
        wait_for(lambda: len(plc.pulses(1)) == 1, what="the stop pulse it missed")
        assert len(plc.pulses(0)) == 1 and plc.register(2) == 3 and plc.register(0) == 1  # and its registers again
        assert status()["dropped"] == 0 and status()["queued"] == 0

        plc.stop()  # down longer than pulse_max_age_s: those pulses would stop the machine for nothing
        inspect()
        time.sleep(7)
        plc.restart()
        wait_for(lambda: status()["dropped"] == 2, what="the stale pulses counted as dropped")
        assert plc.pulses(0) == [] and plc.pulses(1) == [] and wait_for(lambda: plc.register(2) == 4, what="count")
        assert 'fabricad_line_messages_dropped_total{sink="loom5-plc"} 2.0' in httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
        plc.stop()


def test_a_plc_reads_defect_types_as_numbers_a_mill_can_rename(tmp_path, caplog):
    """The type register: the table's number, the mill's own numbers where it gives them, and one
    number (with one warning) for a type nobody numbered: never another type's number."""
    spec = ModbusSinkSpec(name="plc", type_codes={**DEFAULT_TYPE_CODES, "hole": 7, "selvage_mark": 40})
    sink = ModbusSink(spec, tmp_path, on_command=lambda *_: None)
    try:
        assert sink.type_code("hole") == 7 and sink.type_code("selvage_mark") == 40
        assert sink.type_code("line_along") == DEFAULT_TYPE_CODES["line_along"] and sink.type_code(None) == 0
        with caplog.at_level("WARNING"):
            assert sink.type_code("oil_spot") == sink.type_code("oil_spot") == OTHER_TYPE_CODE
        assert sum("oil_spot" in r.message for r in caplog.records) == 1
        assert OTHER_TYPE_CODE not in DEFAULT_TYPE_CODES.values()
        assert len(set(DEFAULT_TYPE_CODES.values())) == len(DEFAULT_TYPE_CODES)
        # every name the product itself can give has a number of its own
        assert set(GEOMETRY_TYPES) | set(AITEX_TYPES.values()) | set(SYNTHETIC_TYPES) <= set(DEFAULT_TYPE_CODES)
    finally:
        sink.outbox.close()


def test_an_acknowledgement_during_a_publish_neither_deadlocks_nor_is_missed(tmp_path):
    """paho calls on_publish holding the lock its publish() takes. Here the broker's PUBACK comes
    while publish() is still running: the sender must neither hold a lock on_publish wants (CI
    once saw the MQTT link stall that way: connected, six messages queued, the keep-alive dead)
    nor miss an acknowledgement that comes before publish() returns."""
    from types import SimpleNamespace

    from fabricad.service.line_io.mqtt import MqttSink, MqttSinkSpec

    sink = MqttSink(MqttSinkSpec(name="plc"), tmp_path, on_command=lambda *_: None)

    class PahoLike:
        def __init__(self):
            self.lock, self.mid = threading.Lock(), 0

        def publish(self, topic, payload, qos, retain):
            self.mid += 1
            inside = threading.Event()

            def network_thread(mid: int) -> None:
                with self.lock:  # as paho's message lock around on_publish
                    inside.set()
                    sink._acknowledged(None, None, mid, None, None)

            threading.Thread(target=network_thread, args=(self.mid,), daemon=True).start()
            inside.wait(5)
            with self.lock:  # publish() needs that lock too
                return SimpleNamespace(mid=self.mid)

    sink.client, sink.state = PahoLike(), "connected"
    done: list[bool] = []
    try:
        for k in range(3):
            sender = threading.Thread(target=lambda: done.append(sink._deliver("t", "{}", False)), daemon=True)
            sender.start()
            sender.join(5)
            assert not sender.is_alive(), f"message {k}: the sender and the network thread wait on each other"
        assert done == [True, True, True] and sink.resent == 0
    finally:
        sink.outbox.close()


def test_line_output_settings_are_checked_at_start_up():
    """A typo in a sink's settings is an error naming it, not a silently ignored key; the kind
    picks the protocol (MQTT when omitted)."""
    from pydantic import ValidationError

    from fabricad.service.settings import ServiceSettings

    outputs = ServiceSettings(line_outputs=[{"name": "a"}, {"kind": "opcua", "name": "b"}, {"kind": "modbus", "name": "c"}]).line_outputs
    assert [o.kind for o in outputs] == ["mqtt", "opcua", "modbus"] and outputs[2].port == 502
    for wrong, field in (({"kind": "modbus", "name": "c", "pulse_len": 5}, "pulse_len"),
                         ({"kind": "mqtt", "name": "../etc"}, "name"),
                         ({"kind": "modbus", "name": "c", "pulse_ms": 5}, "pulse_ms")):
        with pytest.raises(ValidationError, match=field):
            ServiceSettings(line_outputs=[wrong])
