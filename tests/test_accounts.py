"""People: named users with roles, their passwords kept hashed, sign-in and sessions, and the audit
log that names who acknowledged, changed a threshold, activated a model or ran a roll. Against a
real SQLite file (or, with `--database postgresql`, a real PostgreSQL), a real uvicorn service on
loopback, the real CLI, and the dashboard in a real headless Chromium."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from argon2 import PasswordHasher

from fabricad.data.synthetic import PlacedDefect, render_roll
from fabricad.errors import FabricadError
from fabricad.service.accounts import Accounts, LoginThrottled
from fabricad.service.audit import Actor, AuditLog
from fabricad.service.database import Database
from tests.browser import ARTIFACTS, browser_missing, browser_page
from tests.databases import database_url
from tests.live_server import ADMIN, Server, png

httpx = pytest.importorskip("httpx")
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # the real parameters cost 50 ms a check


@pytest.fixture()
def accounts(tmp_path):
    return Accounts(Database(database_url(tmp_path)), hasher=FAST)


def test_passwords_and_session_tokens_are_kept_only_as_hashes(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'people.db'}")
    accounts = Accounts(database, hasher=FAST)
    accounts.add("ayse", "operator", "kumas-2026!")
    session = accounts.login("ayse", "kumas-2026!")
    assert accounts.resolve(session.token) == ("ayse", "operator")
    assert accounts.get("ayse").password_hash.startswith("$argon2id$")
    database.dispose()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("people.db*"))  # the file and its WAL
    assert b"ayse" in stored  # the bytes were really read
    assert b"kumas-2026!" not in stored and session.token.encode() not in stored


def test_sign_in_refuses_wrong_passwords_alike_then_throttles_the_name(accounts):
    accounts.add("ayse", "operator", "right-password")
    with pytest.raises(FabricadError, match="wrong user name or password") as unknown:
        accounts.login("nobody", "right-password")
    for _ in range(accounts.failures.limit):
        with pytest.raises(FabricadError) as wrong:
            accounts.login("ayse", "wrong-password")
        assert str(wrong.value) == str(unknown.value)  # an unknown name reads the same as a wrong password
    with pytest.raises(LoginThrottled, match="try again in"):
        accounts.login("ayse", "right-password")  # even the right one, for a while
    accounts.failures.window_s = 0.0  # the window has passed
    assert accounts.login("ayse", "right-password").role == "operator"


def test_sessions_end_on_expiry_sign_out_and_changes_to_the_user(tmp_path):
    accounts = Accounts(Database(database_url(tmp_path)), session_hours=0.5 / 3600, hasher=FAST)
    accounts.add("boss", "admin", "first-password")
    accounts.add("ayse", "operator", "first-password")
    short = accounts.login("ayse", "first-password")
    time.sleep(0.6)
    assert accounts.resolve(short.token) is None  # expired
    accounts.session_lifetime *= 3600
    password = "first-password"
    for change in ({"password": "second-password"}, {"role": "admin"}, {"disabled": True}):
        token = accounts.login("ayse", password).token
        assert accounts.resolve(token) is not None
        accounts.update("ayse", **change)
        password = change.get("password", password)
        assert accounts.resolve(token) is None, change
    with pytest.raises(FabricadError, match="disabled"):
        accounts.login("ayse", "second-password")
    signed_in = accounts.login("boss", "first-password")
    assert accounts.logout(signed_in.token) and accounts.resolve(signed_in.token) is None


def test_the_last_enabled_admin_cannot_be_removed_disabled_or_demoted(accounts):
    accounts.add("boss", "admin", "a-password")
    for attempt in (lambda: accounts.remove("boss"), lambda: accounts.update("boss", disabled=True),
                    lambda: accounts.update("boss", role="operator")):
        with pytest.raises(FabricadError, match="last enabled admin"):
            attempt()
    accounts.add("deputy", "admin", "a-password")
    accounts.update("boss", role="operator")  # another admin exists now
    assert {u.name: u.role for u in accounts.list()} == {"boss": "operator", "deputy": "admin"}
    with pytest.raises(FabricadError, match="user name"):
        accounts.add("../etc", "operator", "a-password")
    with pytest.raises(FabricadError, match="at least 8"):
        accounts.add("short", "operator", "1234")


def test_the_cli_manages_users_and_its_changes_are_audited(tmp_path):
    url = database_url(tmp_path)
    env = {"FABRICAD_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}

    def fabricad(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fabricad", "users", *args], input=stdin, capture_output=True,
                              text=True, env=env, timeout=120)

    assert fabricad("add", "boss", "--role", "admin", "--password-stdin", stdin="a-long-password\n").returncode == 0
    refused = fabricad("add", "op", "--password-stdin", stdin="short\n")
    assert refused.returncode == 2 and refused.stderr.startswith("error: a password needs at least 8")
    assert fabricad("add", "op", "--password-stdin", stdin="another-password\n").returncode == 0
    assert fabricad("remove", "boss").stderr.startswith("error: 'boss' is the last enabled admin")
    assert fabricad("disable", "op").returncode == 0
    listed = fabricad("list").stdout.split("\n")
    assert listed[0].split()[:3] == ["boss", "admin", "enabled"] and listed[1].split()[:3] == ["op", "operator", "disabled"]
    assert fabricad("passwd", "nobody", "--password-stdin", stdin="whatever-it-is\n").stderr.startswith("error: no user 'nobody'")
    database = Database(url)
    assert Accounts(database).verify("boss", "a-long-password").role == "admin"
    entries = [(e.actor_kind, e.action, e.target) for e in reversed(AuditLog(database).list())]
    assert entries == [("cli", "user.add", "boss"), ("cli", "user.add", "op"), ("cli", "user.update", "op")]


def _login(url: str, name: str, password: str) -> dict:
    answer = httpx.post(f"{url}/v1/auth/login", json={"name": name, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def test_users_act_under_their_names_and_the_audit_log_says_who_did_what(trained_models, tmp_path):
    server = Server(trained_models, tmp_path / "svc", FABRICAD_REPORT_DIR=str(tmp_path / "reports"))
    url, key = server.url, {"X-API-Key": ADMIN}
    try:
        for name, role in (("ayse", "operator"), ("mehmet", "admin")):
            added = httpx.post(f"{url}/v1/users", json={"name": name, "role": role, "password": f"{name}-password"}, headers=key)
            assert added.status_code == 201 and added.json()["role"] == role
        assert httpx.post(f"{url}/v1/users", json={"name": "ayse", "role": "admin", "password": "x" * 8},
                          headers=key).status_code == 409
        ayse, mehmet = _login(url, "ayse", "ayse-password"), _login(url, "mehmet", "mehmet-password")
        assert httpx.get(f"{url}/v1/whoami", headers=ayse).json().items() >= {"name": "ayse", "role": "operator", "kind": "user"}.items()

        # what each may do: an operator neither changes thresholds nor reads the audit log
        assert httpx.put(f"{url}/v1/models/plain/threshold", json={"value": 1e-6}, headers=ayse).status_code == 403
        assert httpx.get(f"{url}/v1/audit", headers=ayse).status_code == 403
        before = httpx.get(f"{url}/v1/models/plain/threshold").json()["value"]
        assert httpx.put(f"{url}/v1/models/plain/threshold", json={"value": 1e-6}, headers=mehmet).status_code == 200
        assert httpx.post(f"{url}/v1/models/plain/activate", headers=mehmet).status_code == 200

        image, _ = render_roll("plain", 128, 128, [PlacedDefect("hole", 40, 40, 40, 40)], seed=2)
        verdict = httpx.post(f"{url}/v1/inspect", content=png(image), headers={"content-type": "image/png"}, timeout=30).json()
        acked = httpx.post(f"{url}/v1/defects/{verdict['defect_id']}/ack", json={"label": "hole", "note": "weft"}, headers=ayse)
        assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "ayse"
        roll = {"id": "R-77", "article": "denim", "width_mm": 64, "cameras": [{"camera_id": "loom1", "mm_per_px": 0.5}]}
        assert httpx.post(f"{url}/v1/rolls", json=roll, headers=ayse).status_code == 201
        assert httpx.post(f"{url}/v1/rolls/R-77/end", json={}, headers=ayse, timeout=60).status_code == 200
        assert httpx.post(f"{url}/v1/auth/login", json={"name": "ayse", "password": "guess-1234"}).status_code == 401

        entries = httpx.get(f"{url}/v1/audit", headers=mehmet).json()
        trail = [(e["actor"], e["action"], e["target"]) for e in reversed(entries)]
        assert trail == [
            ("key:" + trail[0][0][4:], "user.add", "ayse"), (trail[0][0], "user.add", "mehmet"),
            ("ayse", "user.login", None), ("mehmet", "user.login", None),
            ("mehmet", "threshold.set", "plain"), ("mehmet", "model.activate", "plain"),
            ("ayse", "defect.acknowledge", str(verdict["defect_id"])),
            ("ayse", "roll.start", "R-77"), ("ayse", "roll.end", "R-77"), ("ayse", "user.login_failed", None),
        ]  # the refused threshold change is not there: nothing changed
        threshold = next(e for e in entries if e["action"] == "threshold.set")
        assert threshold["detail"]["previous"] == pytest.approx(before) and threshold["detail"]["value"] == pytest.approx(1e-6)
        assert next(e for e in entries if e["action"] == "defect.acknowledge")["detail"]["label"] == "hole"
        assert [e["action"] for e in httpx.get(f"{url}/v1/audit?actor=mehmet&limit=1", headers=mehmet).json()] == ["model.activate"]
        older = httpx.get(f"{url}/v1/audit?before_id={entries[-2]['id']}", headers=mehmet).json()
        assert [e["id"] for e in older] == [entries[-1]["id"]]  # paging back

        # sign-out ends the session; wrong passwords end in 429 with a Retry-After
        assert httpx.post(f"{url}/v1/auth/logout", headers=ayse).status_code == 204
        refused = httpx.post(f"{url}/v1/defects/{verdict['defect_id']}/ack", json={"label": "hole"}, headers=ayse)
        assert refused.status_code == 401 and "unknown or expired" in refused.json()["detail"]
        answers = [httpx.post(f"{url}/v1/auth/login", json={"name": "mehmet", "password": "nope-nope"}).status_code
                   for _ in range(6)]
        throttled = httpx.post(f"{url}/v1/auth/login", json={"name": "mehmet", "password": "mehmet-password"})
        assert answers[:5] == [401] * 5 and answers[5] == 429 and throttled.status_code == 429
        assert int(throttled.headers["Retry-After"]) > 0

        # a restart keeps users, live sessions and the log (all in the database)
        server.stop()
        server = Server(trained_models, tmp_path / "svc", FABRICAD_REPORT_DIR=str(tmp_path / "reports"))
        assert httpx.get(f"{server.url}/v1/whoami", headers=mehmet).json()["name"] == "mehmet"
        assert len(httpx.get(f"{server.url}/v1/audit", headers=mehmet).json()) == len(entries) + 6  # the sign-out and five wrong passwords
    finally:
        server.stop()


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_the_dashboard_signs_people_in_and_shows_admins_the_audit_log_and_users(trained_models, tmp_path):
    from playwright.sync_api import expect

    server = Server(trained_models, tmp_path / "svc")
    key = {"X-API-Key": ADMIN}
    try:
        for name, role in (("ayse", "operator"), ("mehmet", "admin")):
            httpx.post(f"{server.url}/v1/users", json={"name": name, "role": role, "password": f"{name}-password"},
                       headers=key).raise_for_status()
        with browser_page() as page:
            page.goto(server.url)
            people = page.locator('#tabs button[data-tab="people"]')

            def sign_in(name: str, password: str) -> None:
                page.fill("#user", name)
                page.fill("#key", password)
                page.click("#signin")

            sign_in("ayse", "not-her-password")
            expect(page.locator("#banner")).to_contain_text("wrong user name or password")
            sign_in("ayse", "ayse-password")
            expect(page.get_by_test_id("role")).to_have_text("signed in: ayse (operator)")
            expect(people).to_be_hidden()  # operators do not see users or the log
            page.reload()  # the session outlives a reload
            expect(page.get_by_test_id("role")).to_have_text("signed in: ayse (operator)")
            page.click("#signout")
            expect(page.get_by_test_id("role")).to_contain_text("read-only")

            sign_in("mehmet", "mehmet-password")
            expect(page.get_by_test_id("role")).to_have_text("signed in: mehmet (admin)")
            people.click()
            actions = page.locator("#audit-table tbody tr")
            expect(actions.first.get_by_test_id("audit-action")).to_have_text("user.login")
            expect(actions.first.get_by_test_id("audit-actor")).to_have_text("mehmet")
            expect(page.locator("#audit-table")).to_contain_text("user.logout")
            expect(page.locator("#audit-table")).to_contain_text("user.login_failed")
            form = page.locator("#user-add")
            form.locator('input[name="name"]').fill("zeynep")
            form.locator('select[name="role"]').select_option("operator")
            form.locator('input[name="password"]').fill("zeynep-password")
            form.locator('button[type="submit"]').click()
            expect(page.locator('#user-table tr[data-user="zeynep"]')).to_contain_text("operator")
            page.locator('#user-table tr[data-user="zeynep"] >> text=Disable').click()
            expect(page.locator('#user-table tr[data-user="zeynep"] [data-testid="user-state"]')).to_have_text("disabled")
            expect(actions.first.get_by_test_id("audit-action")).to_have_text("user.update")
            page.screenshot(path=ARTIFACTS / "dashboard-people.png")
        assert httpx.post(f"{server.url}/v1/auth/login", json={"name": "zeynep", "password": "zeynep-password"}).status_code == 401
    finally:
        server.stop()


def test_line_and_key_actors_never_hold_a_usable_secret():
    actor = Actor.of_key("a-very-secret-key", "admin")
    assert actor.name.startswith("key:") and len(actor.name) == 12 and "secret" not in actor.name
    assert Actor.of_key("a-very-secret-key", "admin") == actor  # the same key is the same actor in the log
    assert Actor.of_line("plc").name == "line:plc"


def test_audit_paging_refuses_ids_no_database_holds(trained_models, tmp_path):
    """`before_id` past a 32-bit id was a 500 on PostgreSQL (the fuzzer found it): now a 422."""
    server = Server(trained_models, tmp_path / "svc")
    try:
        key = {"X-API-Key": ADMIN}
        assert httpx.get(f"{server.url}/v1/audit?before_id={2**31}", headers=key).status_code == 422
        assert httpx.get(f"{server.url}/v1/audit?before_id={2**31 - 1}", headers=key).status_code == 200
    finally:
        server.stop()
