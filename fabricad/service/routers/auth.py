"""People: sign-in and sign-out, who am I, user accounts (admins), and the audit log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from fabricad.errors import FabricadError
from fabricad.service.accounts import LoginThrottled
from fabricad.service.audit import Actor
from fabricad.service.dependencies import (
    AppState,
    actor_of,
    credential,
    get_state,
    require,
)
from fabricad.service.records import RECORD_ID_MAX, AuditRecord, UserRecord
from fabricad.service.schemas import (
    NAME_PATTERN,
    AuditOut,
    LoginIn,
    PasswordIn,
    SessionOut,
    UserIn,
    UserOut,
    UserPatch,
    WhoAmI,
)

router = APIRouter(tags=["auth"])
UserPath = Annotated[str, Path(pattern=NAME_PATTERN, description="user name")]


def _user_out(row: UserRecord) -> UserOut:
    return UserOut(name=row.name, role=row.role, disabled=row.disabled, created_at=row.created_at)


@router.post("/v1/auth/login", response_model=SessionOut,
             responses={401: {"description": "wrong user name or password, or a disabled user"},
                        429: {"description": "too many wrong passwords for this name; see Retry-After"}})
def login(body: LoginIn, state: AppState = Depends(get_state)):
    """Sign a user in: the answer's token stands for the user until it expires (`session_hours`)
    or the user signs out."""
    try:
        session = state.accounts.login(body.name, body.password)
    except LoginThrottled as exc:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(int(state.accounts.failures.window_s))})
    except FabricadError as exc:
        state.audit.record(Actor(body.name[:64], None, "user"), "user.login_failed")
        raise HTTPException(401, str(exc)) from None
    state.audit.record(Actor(session.user, session.role, "user"), "user.login")
    return SessionOut(token=session.token, name=session.user, role=session.role, expires_at=session.expires_at)


@router.post("/v1/auth/logout", status_code=204)
def logout(secret: str | None = Depends(credential), state: AppState = Depends(get_state)) -> None:
    """End the presented session (an API key is not a session: nothing happens to it)."""
    actor = actor_of(secret, state)
    if actor is not None and actor.kind == "user" and state.accounts.logout(secret):
        state.audit.record(actor, "user.logout")


@router.put("/v1/auth/password", status_code=204, responses={400: {"description": "the current password is wrong"}})
def change_password(body: PasswordIn, actor: Actor = Depends(require("operator")), state: AppState = Depends(get_state)) -> None:
    """A signed-in user changes their own password; all their sessions end (sign in again)."""
    if actor.kind != "user":
        raise HTTPException(400, "an API key has no password; sign in as a user")
    try:
        state.accounts.verify(actor.name, body.current)
    except FabricadError:
        raise HTTPException(400, "the current password is wrong") from None
    state.accounts.update(actor.name, password=body.new)
    state.audit.record(actor, "user.password", actor.name)


@router.get("/v1/whoami", response_model=WhoAmI)
def whoami(secret: str | None = Depends(credential), state: AppState = Depends(get_state)) -> WhoAmI:
    """Who the presented credential signs in as (the dashboard's sign-in): nulls for none or an unknown one."""
    actor = actor_of(secret, state)
    return WhoAmI(role=actor.role if actor else None, name=actor.name if actor else None, kind=actor.kind if actor else None,
                  keys_configured=bool(state.settings.api_keys), users_configured=state.accounts.any_users(),
                  reads_need_key=state.settings.require_key_for_reads)


# --- user accounts (admins) -----------------------------------------------------------------------
@router.get("/v1/users", response_model=list[UserOut], dependencies=[Depends(require("admin"))])
def list_users(state: AppState = Depends(get_state)) -> list[UserOut]:
    return [_user_out(row) for row in state.accounts.list()]


@router.post("/v1/users", response_model=UserOut, status_code=201, responses={409: {"description": "the user exists"}})
def add_user(body: UserIn, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> UserOut:
    try:
        row = state.accounts.add(body.name, body.role, body.password)
    except FabricadError as exc:
        raise HTTPException(409, str(exc)) from None
    state.audit.record(actor, "user.add", body.name, role=body.role)
    return _user_out(row)


@router.patch("/v1/users/{name}", response_model=UserOut,
              responses={409: {"description": "the change would leave no enabled admin"}})
def update_user(name: UserPath, body: UserPatch, actor: Actor = Depends(require("admin")),
                state: AppState = Depends(get_state)) -> UserOut:
    """Change a user's role, password or whether it may sign in; its sessions end."""
    try:
        row = state.accounts.update(name, role=body.role, password=body.password, disabled=body.disabled)
    except KeyError:
        raise HTTPException(404, f"no user {name!r}") from None
    except FabricadError as exc:
        raise HTTPException(409, str(exc)) from None
    state.audit.record(actor, "user.update", name, role=body.role, disabled=body.disabled,
                       password_changed=body.password is not None)
    return _user_out(row)


@router.delete("/v1/users/{name}", status_code=204, responses={409: {"description": "the last enabled admin"}})
def remove_user(name: UserPath, actor: Actor = Depends(require("admin")), state: AppState = Depends(get_state)) -> None:
    try:
        state.accounts.remove(name)
    except KeyError:
        raise HTTPException(404, f"no user {name!r}") from None
    except FabricadError as exc:
        raise HTTPException(409, str(exc)) from None
    state.audit.record(actor, "user.remove", name)


# --- the audit log --------------------------------------------------------------------------------
def _audit_out(row: AuditRecord) -> AuditOut:
    return AuditOut(id=row.id, at=row.at, actor=row.actor, actor_kind=row.actor_kind, role=row.role, action=row.action,
                    target=row.target, detail=json.loads(row.detail_json))


@router.get("/v1/audit", response_model=list[AuditOut], dependencies=[Depends(require("admin"))])
def audit_log(actor: str | None = Query(None, max_length=80), action: str | None = Query(None, max_length=48),
              target: str | None = Query(None, max_length=160), since: datetime | None = None, until: datetime | None = None,
              before_id: int | None = Query(None, ge=1, le=RECORD_ID_MAX), limit: int = Query(200, ge=1, le=1000),
              state: AppState = Depends(get_state)) -> list[AuditOut]:
    """Who did what, newest first: filter by actor, action (e.g. `threshold.set`), target or time;
    page back with `before_id` (the last id of the previous page)."""
    rows = state.audit.list(actor=actor, action=action, target=target, since=since, until=until, limit=limit,
                            before_id=before_id)
    return [_audit_out(row) for row in rows]
