"""Named user accounts and their sessions: who signs in to the dashboard, and as what.

People sign in with a name and a password; machines (a line controller, a script) keep using API
keys (`api_keys` in the settings). Passwords are kept as Argon2id hashes (argon2-cffi, its default
parameters: about 50 ms and 64 MiB a check, which is what makes a stolen database slow to guess).
A sign-in gives a random session token; the database keeps only the token's SHA-256, so neither
a backup nor a leaked copy of the database signs anybody in. A session ends when it expires
(`session_hours`, one shift by default), on sign-out, and when its user's password changes or
the user is disabled or removed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select

from fabricad.errors import FabricadError
from fabricad.service.database import Database
from fabricad.service.records import SessionRecord, UserRecord
from fabricad.service.schemas import MIN_PASSWORD, NAME_PATTERN

ROLES = ("operator", "admin")


class LoginThrottled(FabricadError):
    """Too many wrong passwords for one user name in a short time."""


@dataclass(frozen=True)
class Session:
    token: str
    user: str
    role: str
    expires_at: datetime


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise FabricadError(f"a password needs at least {MIN_PASSWORD} characters")


class FailedLogins:
    """Wrong passwords per user name: after `limit` within `window_s`, that name's sign-in is
    refused for `window_s` (right password or not), so a password cannot be guessed through the
    dashboard at the hasher's speed. Kept in memory: a restart forgives, which is acceptable for
    a service on the mill's own network."""

    def __init__(self, limit: int = 5, window_s: float = 300.0):
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, name: str, now: float) -> None:
        with self._lock:
            recent = [t for t in self._failures.get(name, []) if now - t < self.window_s]
            self._failures[name] = recent
            if len(recent) >= self.limit:
                wait = int(self.window_s - (now - recent[0])) + 1
                raise LoginThrottled(f"too many wrong passwords for {name!r}: try again in {wait} s")

    def failed(self, name: str, now: float) -> None:
        with self._lock:
            self._failures.setdefault(name, []).append(now)

    def forget(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


class Accounts:
    """Users and sessions in the service's database."""

    def __init__(self, database: Database, session_hours: float = 12.0, hasher: PasswordHasher | None = None):
        self.database = database
        self.session_lifetime = timedelta(hours=session_hours)
        self.hasher = hasher or PasswordHasher()
        self.failures = FailedLogins()

    # --- users ----------------------------------------------------------------------------------
    def add(self, name: str, role: str, password: str) -> UserRecord:
        if not re.fullmatch(NAME_PATTERN, name):
            raise FabricadError(f"user name {name!r}: letters, digits and . _ @ - only, up to 64, starting with a letter or digit")
        _check_role(role)
        check_password(password)
        with self.database.session(write=True) as session:
            if session.get(UserRecord, name) is not None:
                raise FabricadError(f"user {name!r} exists already")
            row = UserRecord(name=name, role=role, password_hash=self.hasher.hash(password),
                             created_at=datetime.now(UTC), disabled=False)
            session.add(row)
        return row

    def any_users(self) -> bool:
        with self.database.session() as session:
            return session.scalar(select(UserRecord.name).limit(1)) is not None

    def list(self) -> list[UserRecord]:
        with self.database.session() as session:
            return list(session.scalars(select(UserRecord).order_by(UserRecord.name)))

    def get(self, name: str) -> UserRecord:
        with self.database.session() as session:
            row = session.get(UserRecord, name)
        if row is None:
            raise KeyError(name)
        return row

    def update(self, name: str, role: str | None = None, password: str | None = None,
               disabled: bool | None = None) -> UserRecord:
        """Change a user; a new password, a disabling or a new role ends the user's sessions
        (whoever holds one signs in again, as what they are now)."""
        if role is not None:
            _check_role(role)
        if password is not None:
            check_password(password)
        with self.database.session(write=True) as session:
            row = session.get(UserRecord, name)
            if row is None:
                raise KeyError(name)
            if (role not in (None, "admin") or disabled) and row.role == "admin" and not row.disabled:
                _keep_an_admin(session, name)
            if role is not None:
                row.role = role
            if password is not None:
                row.password_hash = self.hasher.hash(password)
            if disabled is not None:
                row.disabled = disabled
            if role is not None or password is not None or disabled:
                session.execute(delete(SessionRecord).where(SessionRecord.user == name))
        self.failures.forget(name)
        return row

    def remove(self, name: str) -> None:
        with self.database.session(write=True) as session:
            row = session.get(UserRecord, name)
            if row is None:
                raise KeyError(name)
            if row.role == "admin" and not row.disabled:
                _keep_an_admin(session, name)
            session.delete(row)
            session.execute(delete(SessionRecord).where(SessionRecord.user == name))

    # --- sessions -------------------------------------------------------------------------------
    def login(self, name: str, password: str) -> Session:
        """A new session for the right password; `FabricadError` (same words for an unknown
        name and a wrong password) or `LoginThrottled` otherwise."""
        row = self.verify(name, password)
        token = secrets.token_urlsafe(32)
        created = datetime.now(UTC)
        record = SessionRecord(token_hash=_token_hash(token), user=name, created_at=created,
                               expires_at=created + self.session_lifetime)
        with self.database.session(write=True) as session:
            session.execute(delete(SessionRecord).where(SessionRecord.expires_at < created))
            session.add(record)
        return Session(token, name, row.role, record.expires_at)

    def verify(self, name: str, password: str) -> UserRecord:
        """The user, if `password` is theirs and they may sign in; raises as `login` does."""
        now = time.time()
        self.failures.check(name, now)
        with self.database.session() as session:
            row = session.get(UserRecord, name)
        try:
            if row is None:
                # Hash anyway, so an unknown name takes as long to refuse as a wrong password.
                self.hasher.hash(password)
                raise VerificationError
            self.hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            self.failures.failed(name, now)
            raise FabricadError("wrong user name or password") from None
        if row.disabled:
            raise FabricadError(f"user {name!r} is disabled; an admin can enable it")
        self.failures.forget(name)
        if self.hasher.check_needs_rehash(row.password_hash):  # parameters raised since it was set
            with self.database.session(write=True) as session:
                session.get(UserRecord, name).password_hash = self.hasher.hash(password)
        return row

    def resolve(self, token: str) -> tuple[str, str] | None:
        """(user, role) of a live session token; None for an unknown, expired or disabled one."""
        with self.database.session() as session:
            found = session.get(SessionRecord, _token_hash(token))
            if found is None or found.expires_at <= datetime.now(UTC):
                return None
            user = session.get(UserRecord, found.user)
        if user is None or user.disabled:
            return None
        return user.name, user.role

    def logout(self, token: str) -> bool:
        with self.database.session(write=True) as session:
            return session.execute(delete(SessionRecord).where(SessionRecord.token_hash == _token_hash(token))).rowcount > 0


def _keep_an_admin(session, name: str) -> None:
    """Refuse to remove, disable or demote the last enabled admin: nobody could manage users
    from the dashboard any more (the CLI still could, on the service's machine)."""
    others = session.scalar(select(func.count()).select_from(UserRecord).where(
        UserRecord.role == "admin", UserRecord.disabled.is_(False), UserRecord.name != name))
    if not others:
        raise FabricadError(f"{name!r} is the last enabled admin: make another admin first")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise FabricadError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
