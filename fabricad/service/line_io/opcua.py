"""The OPC UA sink: the service as an OPC UA server a PLC or SCADA reads and calls.

    Objects/Fabricad/Cameras/<camera>/  CameraState, Verdict, Score, Threshold, DefectCount, RollId,
                                        RollPoints, LastDefectAlongM, LastDefectAcrossMm,
                                        LastDefectLengthMm, LastDefectWidthMm, LastDefectType,
                                        StopRequested, StopReason                     (read-only)
    Objects/Fabricad/Line/              StartRoll(spec JSON), EndRoll(id, length_m),
                                        EncoderPosition(roll_id, along_m), AcknowledgeStop(camera)

OPC UA is state, not messages: a PLC polls or subscribes to the tags, so nothing needs queuing;
`DefectCount` only ever grows, so a client that missed a change still sees how many came.
`StopRequested` stays true until the PLC calls `AcknowledgeStop`. Security: users with passwords
(anonymous off unless `allow_anonymous`), and the Basic256Sha256 sign-and-encrypt policy with a
self-signed certificate made on first start (`security: ["sign_encrypt"]`, the default, with
`"none"` added only where asked for).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from fabricad.service.line_io.base import SinkSpecBase

log = logging.getLogger(__name__)
NAMESPACE = "urn:fabricad:line"
TAGS = {  # name → (OPC UA type, initial value)
    "CameraState": ("String", ""), "RollPoints": ("UInt32", 0), "LastDefectWidthMm": ("Double", 0.0),
    "Verdict": ("String", ""), "Score": ("Double", 0.0), "Threshold": ("Double", 0.0), "DefectCount": ("UInt32", 0),
    "RollId": ("String", ""), "LastDefectAlongM": ("Double", 0.0), "LastDefectAcrossMm": ("Double", 0.0),
    "LastDefectLengthMm": ("Double", 0.0), "LastDefectType": ("String", ""), "StopRequested": ("Boolean", False),
    "StopReason": ("String", ""),
}


class OpcUaSinkSpec(SinkSpecBase):
    kind: Literal["opcua"] = "opcua"
    host: str = Field("0.0.0.0", max_length=253, description="the address the server listens on")
    port: int = Field(4840, ge=1, le=65535)
    users: dict[str, SecretStr] = Field({}, description="user → password; a PLC signs in as one of them")
    allow_anonymous: bool = False
    security: list[Literal["sign_encrypt", "none"]] = Field(["sign_encrypt"], min_length=1,
                                                            description="Basic256Sha256 sign-and-encrypt; 'none' for trials")
    certificate_dir: Path = Field(Path("opcua-pki"), description="the server's key and self-signed certificate")


class _Users:
    """asyncua's user manager: the configured users, anonymous only if allowed."""

    def __init__(self, spec: OpcUaSinkSpec):
        self.spec = spec

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            return User(role=UserRole.User) if self.spec.allow_anonymous else None
        known = self.spec.users.get(username)
        if known is not None and password is not None and hmac.compare_digest(known.get_secret_value().encode(),
                                                                              str(password).encode()):
            return User(role=UserRole.User, name=username)
        return None


class OpcUaSink:
    def __init__(self, spec: OpcUaSinkSpec, _outbox_dir: Path, on_command: Callable[[str, dict], None]):
        self.spec, self.on_command = spec, on_command
        self.state, self.last_error = "connecting", None
        self.sent = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"opcua-{spec.name}", daemon=True)
        self._nodes: dict[str, dict[str, object]] = {}
        self._stop: asyncio.Event | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.spec.host}:{self.spec.port}/fabricad/"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            self.state, self.last_error = "stopped", "the OPC UA server did not start within 30 s"

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.state = "stopped"

    def status(self) -> dict:
        return {"name": self.spec.name, "kind": "opcua", "target": self.endpoint, "state": self.state, "queued": 0,
                "sent": self.sent, "resent": 0, "dropped": 0, "last_error": self.last_error}

    # --- the server ----------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception as exc:  # a port in use, a bad certificate folder: the service carries on without it
            self.state, self.last_error = "stopped", f"{type(exc).__name__}: {exc}"
            log.error("line output %s: the OPC UA server stopped: %s", self.spec.name, self.last_error)
            self._ready.set()

    async def _serve(self) -> None:
        from asyncua import Server, ua
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        server = Server(user_manager=_Users(self.spec))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"fabricad ({self.spec.name})")
        policies = {"sign_encrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, "none": ua.SecurityPolicyType.NoSecurity}
        server.set_security_policy([policies[p] for p in self.spec.security])
        server.set_security_IDs(["Username", "Anonymous"] if self.spec.allow_anonymous else ["Username"])
        if "sign_encrypt" in self.spec.security:
            folder = self.spec.certificate_dir
            folder.mkdir(parents=True, exist_ok=True)
            key, cert = folder / f"{self.spec.name}-key.pem", folder / f"{self.spec.name}-cert.der"
            await setup_self_signed_certificate(key, cert, "urn:fabricad:server", "localhost",
                                                [ExtendedKeyUsageOID.SERVER_AUTH], {"commonName": "fabricad"})
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        self._ns = await server.register_namespace(NAMESPACE)
        root = await server.nodes.objects.add_object(self._ns, "Fabricad")
        self._cameras = await root.add_object(self._ns, "Cameras")
        line = await root.add_object(self._ns, "Line")
        string, double = ua.VariantType.String, ua.VariantType.Double
        await line.add_method(self._ns, "StartRoll", self._method("roll/start", lambda spec: json.loads(spec)), [string], [])
        await line.add_method(self._ns, "EndRoll", self._method("roll/end", lambda i, n: {"id": i, "length_m": n or None}),
                              [string, double], [])
        await line.add_method(self._ns, "EncoderPosition",
                              self._method("encoder", lambda i, m: {"roll_id": i, "along_m": m}), [string, double], [])
        await line.add_method(self._ns, "AcknowledgeStop", self._acknowledge, [string], [])
        for camera in self.spec.cameras or []:
            await self._camera(camera)
        self._stop = asyncio.Event()
        async with server:
            self.state = "connected"
            self._ready.set()
            log.info("line output %s: OPC UA server at %s", self.spec.name, self.endpoint)
            await self._stop.wait()

    def _method(self, command: str, body_of):
        async def call(_parent, *arguments):
            from asyncua import ua

            try:
                body = body_of(*[a.Value for a in arguments])
                await asyncio.get_running_loop().run_in_executor(None, self.on_command, command, body)
            except Exception as exc:  # the PLC gets the reason as a bad status, the sink carries on
                self.last_error = f"{command}: {exc}"
                raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidArgument) from None
            return []

        return call

    async def _acknowledge(self, _parent, camera):
        nodes = self._nodes.get(camera.Value)
        if nodes is not None:
            await nodes["StopRequested"].write_value(False)
            await nodes["StopReason"].write_value("")
        return []

    async def _camera(self, camera_id: str) -> dict[str, object]:
        from asyncua import ua

        if camera_id not in self._nodes:
            folder = await self._cameras.add_object(self._ns, camera_id)
            nodes = {}
            for tag, (kind, value) in TAGS.items():
                nodes[tag] = await folder.add_variable(self._ns, tag, ua.Variant(value, getattr(ua.VariantType, kind)))
            self._nodes[camera_id] = nodes
        return self._nodes[camera_id]

    # --- out -----------------------------------------------------------------------------------
    def offer(self, kind: str, camera_id: str, payload: dict) -> None:
        """Update the camera's tags (on the server's loop; never waits for it)."""
        if self.state == "connected":
            asyncio.run_coroutine_threadsafe(self._apply(kind, camera_id, payload), self._loop)

    async def _apply(self, kind: str, camera_id: str, payload: dict) -> None:
        from asyncua import ua

        nodes = await self._camera(camera_id)

        async def put(tag: str, value) -> None:
            await nodes[tag].write_value(ua.Variant(value, getattr(ua.VariantType, TAGS[tag][0])))

        if kind == "verdict":
            await put("Verdict", payload["verdict"])
            await put("Score", float(payload["score"]))
            await put("Threshold", float(payload["threshold"]))
        elif kind == "defect":
            count = await nodes["DefectCount"].read_value()
            await put("DefectCount", count + 1)
            await put("Score", float(payload["score"]))
            await put("RollId", payload.get("roll_id") or "")
            if payload.get("roll_points") is not None:
                await put("RollPoints", int(payload["roll_points"]))
            for tag, key in (("LastDefectAlongM", "along_m"), ("LastDefectAcrossMm", "across_mm"),
                             ("LastDefectLengthMm", "length_mm"), ("LastDefectWidthMm", "width_mm")):
                await put(tag, float(payload.get(key) or 0.0))
            await put("LastDefectType", payload.get("type") or "")
        elif kind == "status":
            await put("CameraState", payload["state"])
        elif kind == "stop":
            await put("StopReason", payload["reason"])
            await put("StopRequested", True)
        self.sent += 1
