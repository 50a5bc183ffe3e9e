"""Request and response bodies of the REST API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from fabricad.inference.bundle import Threshold
from fabricad.inference.operating_point import OperatingPoint
from fabricad.rolls.geometry import CameraPlacement
from fabricad.rolls.grading import GradingRules
from fabricad.service.cameras import CameraSpec, CameraState


class RegionOut(BaseModel):
    x: int
    y: int
    width: int
    height: int
    area: int = Field(description="pixels above the threshold")
    max_score: float
    mean_score: float
    outline: list[list[int]] = Field([], description="boundary polygon, [x, y] pixel points")
    type: str | None = Field(None, description="defect type: the bundle's classifier's (`unknown` when unsure) or, "
                                               "without one, a geometry rule's: spot, line_along, line_across")
    type_confidence: float | None = Field(None, description="the classifier's probability of `type`; null for a rule")


class InspectionOut(BaseModel):
    verdict: Literal["OK", "DEFECT"]
    is_defect: bool
    score: float = Field(description="raw image score: maximum of the anomaly map (outside the operating point's "
                                     "selvedge band, if it sets one)")
    normalized_score: float = Field(description="0..1, the threshold maps to 0.5")
    threshold: float
    selvedge_score: float | None = Field(None, description="the selvedge band's maximum, where the operating point sets "
                                                          "a band and the frame shows a fabric edge; judged against "
                                                          "`selvedge_threshold` (or not at all)")
    regions: list[RegionOut]
    model: str
    model_version: str = Field(description="sha256 prefix of the model graph")
    latency_ms: float
    alignment: dict | None = Field(None, description="how the scan was stretched, mirrored and/or sheared to the "
                                   "training scans' weave before scoring ({mirror, shear, stretch, gain}); null when it "
                                   "matched as it is")
    fabric_in_view: bool = Field(True, description="false when the model's fabric ROI saw nothing but background "
                                 "(a web break, the end of a roll): the verdict OK then says nothing about fabric")
    width: int
    height: int
    defect_id: int | None = Field(None, description="defect-log record, when the verdict is DEFECT")
    roll_id: str | None = Field(None, description="the running roll this camera inspects")
    along_m: float | None = Field(None, description="the frame's top row along the roll, metres")
    roll_defect_ids: list[int] | None = Field(None, description="roll defects this frame's regions belong to")
    overlay_png_base64: str | None = None
    heatmap_png_base64: str | None = None


class BatchOut(BaseModel):
    results: list[InspectionOut | ErrorItem]


class ErrorItem(BaseModel):
    filename: str
    error: str


ThresholdOut = Threshold  # the bundle's own threshold record is the API's answer too


class ThresholdIn(BaseModel):
    value: float | None = Field(None, description="explicit threshold on the raw score")
    target_fpr: float | None = Field(None, gt=0, lt=1, description="recalibrate for this false-alarm rate on the last teach-in's line scores, or on the bundle's normal scores before any teach-in")


class TeachInIn(BaseModel):
    frames: int = Field(500, ge=20, le=100_000, description="scores of good-fabric frames to collect")
    target_fpr: float = Field(0.01, gt=0, lt=0.5, description="false-alarm rate the threshold is set for")
    camera_id: str | None = Field(None, max_length=64, description="only this camera's frames; all of the model's when null")
    zones: int = Field(0, ge=0, le=256, description="also teach a threshold per band of equal width across the frame "
                                                     "(the operating point's zones; a band only ever raises its threshold); 0: none")


class TeachInOut(BaseModel):
    model: str
    state: Literal["collecting", "ready"]
    collected: int
    frames: int
    target_fpr: float
    camera_id: str | None
    started_at: float = Field(description="Unix time")
    proposed: Threshold | None = Field(description="the threshold the collected scores give, once `frames` have come in")
    zones: int = 0
    proposed_zones: list[float] | None = Field(None, description="each band's threshold the collected frames give (with `zones`)")
    proposed_selvedge_threshold: float | None = Field(None, description="the selvedge band's own threshold the collected "
                                                                        "frames give, where the operating point sets a "
                                                                        "band (`selvedge_mm`) and the frames showed it")


OperatingPointOut = OperatingPoint  # the engine's own record is the API's answer too


class OperatingPointIn(BaseModel):
    mm_per_px: float = Field(gt=0, le=100, description="fabric millimetres per image pixel: the camera's calibration")
    min_area_mm2: float = Field(0.0, ge=0, le=1e6, description="regions smaller than this raise no alarm")
    min_length_mm: float = Field(0.0, ge=0, le=1e5, description="regions whose larger extent is shorter raise no alarm")
    selvedge_mm: float = Field(0.0, ge=0, le=10_000, description="a band beside each fabric edge the frame shows, left "
                                                               "uninspected (selvedges) unless `selvedge_threshold` is "
                                                               "given; 0: none")
    selvedge_threshold: float | None = Field(None, gt=0, description="with `selvedge_mm`: the band is inspected against "
                                                                      "this threshold of its own (above the model's: only "
                                                                      "what stands out of the selvedge raises an alarm)")
    persistence_frames: int = Field(1, ge=1, le=10, description="a camera's region raises an alarm only once this many of "
                                                                  "its frames in a row showed it at the same place; 1: at once")


    @model_validator(mode="after")
    def _band_for_its_threshold(self) -> OperatingPointIn:
        if self.selvedge_threshold is not None and not self.selvedge_mm:
            raise ValueError("selvedge_threshold judges the selvedge band: give selvedge_mm too")
        return self


class CalibrationOut(BaseModel):
    value: float = Field(description="the threshold previewed")
    current: float = Field(description="the threshold in force")
    normal_source: Literal["bundle", "teach-in"] = Field(
        "bundle", description="whose normal scores: the bundle's held-out images, or the last teach-in's line frames")
    false_alarm_rate: float | None = Field(description="share of those normal scores above `value`")
    recall: float | None = Field(description="share of operator-confirmed defects above `value`; none labelled: null")
    false_alarms_still_raised: float | None = Field(description="share of labelled false alarms still above `value`")
    normal_scores: list[float]
    defect_scores: list[float]
    false_alarm_scores: list[float]


class WhoAmI(BaseModel):
    role: Literal["operator", "admin"] | None
    name: str | None = Field(None, description="the user's name, key:<fingerprint> for an API key; null when not signed in")
    kind: Literal["user", "key"] | None = None
    keys_configured: bool
    users_configured: bool = False
    reads_need_key: bool


# --- people ---------------------------------------------------------------------------------------
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
MIN_PASSWORD = 8
UserName = Field(pattern=NAME_PATTERN, description="letters, digits and . _ @ -, up to 64")
Password = Field(min_length=MIN_PASSWORD, max_length=256)


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class SessionOut(BaseModel):
    token: str = Field(description="present it as the X-API-Key header or `Authorization: Bearer …`")
    name: str
    role: Literal["operator", "admin"]
    expires_at: datetime


class UserIn(BaseModel):
    name: str = UserName
    role: Literal["operator", "admin"]
    password: str = Password


class UserPatch(BaseModel):
    role: Literal["operator", "admin"] | None = None
    password: str | None = Field(None, min_length=MIN_PASSWORD, max_length=256)
    disabled: bool | None = None


class PasswordIn(BaseModel):
    current: str = Field(min_length=1, max_length=256)
    new: str = Password


class UserOut(BaseModel):
    name: str
    role: Literal["operator", "admin"]
    disabled: bool
    created_at: datetime


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="a user's name, key:<fingerprint> for an API key, line:<output> for a line controller")
    actor_kind: Literal["user", "key", "line", "cli"]
    role: str | None
    action: str = Field(description="e.g. defect.acknowledge, threshold.set, model.activate, roll.start, user.login")
    target: str | None = Field(description="what it was done to: a defect id, a model, a roll, a camera, a user")
    detail: dict


class DefectTypesOut(BaseModel):
    types: dict[str, int] = Field(description="labelled examples per type the classifier was fitted on (all sources)")
    unknown_below: float = Field(description="a top probability below this answers `unknown`")
    trained_at: str
    from_service: int = Field(description="examples from the operators' labels on this service")
    skipped: int = Field(0, description="labelled defects left out: their image was pruned or unreadable")
    validation: dict | None = Field(None, description="leave-one-image-out accuracy, macro-F1 and per-type accuracy, "
                                                      "beside the geometry rules'; null with too few images per type")


class ModelOut(BaseModel):
    name: str
    active: bool
    loaded: bool
    precision: str
    input: list[int]
    version: str
    threshold: ThresholdOut
    teacher: str
    backend: str | None = None
    texture_alignment: bool = Field(False, description="scans are turned to the training scans' weave before "
                                    "scoring: the bundle carries a texture reference and the service's align_texture is on")


class DefectOut(BaseModel):
    id: int
    created_at: datetime
    camera_id: str | None
    model: str
    model_version: str
    score: float
    normalized_score: float
    threshold: float
    regions: list[RegionOut]
    width: int
    height: int
    has_image: bool
    acknowledged: bool
    label: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    roll_id: str | None = None
    across_mm: float | None = None
    along_m: float | None = None
    alignment: dict | None = Field(None, description="how the scan was stretched, mirrored and/or sheared to the "
                                   "training scans' weave before scoring; null when it matched as it is")


class DefectPage(BaseModel):
    items: list[DefectOut]
    total: int
    offset: int
    limit: int


class AckIn(BaseModel):
    label: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 _.\-]+$",
                       description="true_defect, false_alarm or a defect type")
    note: str | None = Field(None, max_length=500)


BatchOut.model_rebuild()


class RollSpec(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="the mill's roll number")
    article: str = Field(min_length=1, max_length=128, description="article / fabric name")
    model: str | None = Field(None, max_length=128, description="model for this article; the cameras' own when omitted")
    width_mm: float = Field(gt=0, le=20_000, description="usable width")
    speed_m_per_min: float | None = Field(None, gt=0, le=1000, description="line speed, when no encoder feed")
    cameras: list[CameraPlacement] = Field(min_length=1, max_length=32)
    rules: GradingRules = GradingRules()
    merge_gap_mm: float = Field(10.0, ge=0, le=1000, description="sightings closer than this are one defect")
    coverage_tolerance_mm: float = Field(10.0, ge=0, le=1000, description="gaps between a camera's frames (or "
                                         "between camera lanes) narrower than this are jitter, not uninspected fabric")


# --- rolls: requests ---------------------------------------------------------------------------
class PositionIn(BaseModel):
    along_m: float = Field(ge=0, le=1e6, description="encoder reading: metres of this roll past the cameras")


class EndIn(BaseModel):
    length_m: float | None = Field(None, gt=0, le=1e6, description="measured roll length; the inspected length when omitted")


# --- rolls: answers ----------------------------------------------------------------------------
class StretchOut(BaseModel):
    along_m: list[float] = Field(description="[start, end] of a stretch some camera did not see, metres")
    length_m: float
    cameras: list[str] = Field(description="the cameras that did not see it")


class GradeOut(BaseModel):
    points: int
    points_per_100_m2: float
    limit_per_100_m2: float
    passed: bool
    reasons: list[str]
    defect_points: dict[str, int] = Field(description="roll-defect id → points")
    metre_points: dict[str, int] = Field(description="metre of the roll → points there (capped per metre)")
    area_m2: float = Field(description="inspected area the points are counted over")
    uninspected_m: float
    uncovered_mm: float


class RollOut(BaseModel):
    id: str
    article: str
    model: str | None
    status: Literal["running", "ended"]
    width_mm: float
    speed_m_per_min: float | None
    length_m: float
    started_at: datetime
    ended_at: datetime | None
    cameras: list[CameraPlacement]
    rules: GradingRules
    defects: int | None = Field(description="roll defects (sightings merged)")
    grade: GradeOut | None
    uninspected: list[StretchOut]
    uncovered_across_mm: list[list[float]] = Field(description="bands of the width in no camera's lane, [from, to] mm")


class RollDefectOut(BaseModel):
    id: int
    roll_id: str
    created_at: datetime
    across_mm: list[float] = Field(description="[from, to] mm from the roll's left edge")
    along_m: list[float] = Field(description="[from, to] metres from the roll's start")
    width_mm: float
    length_mm: float
    outline: list[list[float]] = Field(description="polygon, [across mm, along m] points")
    sightings: list[int] = Field(description="defect-log ids of the frames it was seen in")
    cameras: list[str]
    max_score: float
    label: str | None = Field(description="the operator's label; it decides over `type`")
    type: str | None = Field(None, description="the predicted type of its strongest sighting (see RegionOut.type); "
                                               "a classifier's named type grades like a label (a `hole` by the hole rule)")
    type_confidence: float | None = None
    points: int | None = Field(description="4-point-system points (with the roll's grade)")


class RollDetailOut(RollOut):
    defect_list: list[RollDefectOut]


class PositionOut(BaseModel):
    roll_id: str
    along_m: float


# --- cameras, health ---------------------------------------------------------------------------
class CameraModelIn(BaseModel):
    model: str | None = Field(None, max_length=128, description="model name; null follows the active model")


class CameraOut(CameraSpec):
    state: CameraState
    error: str | None
    frames_captured: int
    frames_processed: int
    frames_dropped: int
    defects: int
    queue_depth: int
    last_result: dict | None = Field(description="the newest frame's event (as on the events WebSocket)")
    health: dict = Field({}, description="what the source reports (GenICam: device, frames_lost, lines_lost, "
                                         "buffers_incomplete, acquired_fps, trigger, temperature_c)")


class GenICamDeviceOut(BaseModel):
    """A GenICam camera Aravis found; `gige:` + its serial, id or address opens it."""

    id: str
    serial: str | None
    model: str | None
    vendor: str | None
    address: str | None
    protocol: str | None


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    model: str | None = Field(description="the active model")
    problems: list[str] = Field(description="why the service is not ready (503)")


class ErrorOut(BaseModel):
    """Every 4xx answer: what was wrong, in words."""

    detail: str | list = Field(description="the reason; for a malformed request, pydantic's list of errors")


class LineSinkOut(BaseModel):
    """One line output (`line_outputs` in the settings) and how its connection stands."""

    name: str
    kind: Literal["mqtt", "opcua", "modbus"]
    target: str = Field(description="the broker's or the PLC's host:port, or the OPC UA server's endpoint")
    state: Literal["connecting", "connected", "disconnected", "stopped"]
    queued: int = Field(description="messages waiting in its outbox on disk")
    sent: int = Field(description="messages the broker acknowledged (OPC UA: tag updates; Modbus: pulses) since the service started")
    resent: int = Field(description="messages sent again after no acknowledgement (the PLC may see them twice, same id)")
    dropped: int = Field(description="messages dropped: the oldest when the outbox was full, Modbus pulses that came too late")
    last_error: str | None


# --- retraining from the operators' labels ---------------------------------------------------------
class RetrainIn(BaseModel):
    steps: int | None = Field(None, ge=10, le=100_000, description="fine-tune steps; the service's retrain_steps when null")


class ComparisonOut(BaseModel):
    measure: str = Field(description="what is compared, e.g. 'labelled false alarms still raised'")
    images: int
    old: float | None = Field(description="the model in use, at its own calibrated threshold")
    new: float | None = Field(description="the candidate, at its own calibrated threshold")
    better: Literal["lower", "higher"]
    unit: Literal["share", "auroc"] = Field(description="a share of the images (0..1), or an AUROC")
    tolerance: float
    gate: bool = Field(description="whether the candidate is withheld when this figure is worse")
    verdict: Literal["better", "same", "worse", "n/a"]


class RetrainJobOut(BaseModel):
    job: str
    model: str
    state: Literal["running", "done", "failed", "cancelled", "activated", "discarded"]
    phase: str = Field(description="fine-tuning, exporting, comparing …")
    step: int
    steps: int
    started_at: datetime
    updated_at: datetime
    old_version: str
    new_version: str | None
    false_alarm_frames: int
    defect_frames: int
    comparison: list[ComparisonOut]
    verdict: Literal["better", "not_worse", "worse"] | None
    reasons: list[str]
    error: str | None
    offered: bool = Field(description="the candidate may be activated: done, and not worse than the model in use")


class KeptVersionOut(BaseModel):
    version: str
    kept_at: datetime
    reason: str


class RetrainOut(BaseModel):
    model: str
    available: bool = Field(description="a retrain can start now")
    reason: str | None = Field(description="why not, when it cannot")
    false_alarms: int = Field(description="frames labelled false_alarm whose image is kept: what a retrain learns")
    confirmed_defects: int = Field(description="frames labelled otherwise: what the candidate must still catch")
    job: RetrainJobOut | None = Field(description="the newest retrain")
    history: list[KeptVersionOut] = Field(description="bundles kept to roll back to, newest first")


class RollbackIn(BaseModel):
    version: str | None = Field(None, pattern=r"^[0-9a-f]{12}$", description="the kept version; the newest when null")
