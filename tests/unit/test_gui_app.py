"""The front-end's guard and error pages, with no manager behind it (fast)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from conpaassql.gui.app import create_app
from conpaassql.gui.config import GuiConfig

HTML = {"accept": "text/html"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def config() -> GuiConfig:
    return GuiConfig(manager_host="127.0.0.1", manager_port=closed_port())


@pytest.fixture
def client(config: GuiConfig) -> Iterator[TestClient]:
    with TestClient(create_app(config), base_url="http://127.0.0.1:5000") as client:
        yield client


def csrf_of(client: TestClient) -> str:
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"',
                      client.get("/", headers=HTML).text)
    assert found
    return found.group(1)


def post_paths(config: GuiConfig) -> list[str]:
    app = create_app(config)
    return [route.path for route in app.routes
            if isinstance(route, Route) and "POST" in (route.methods or ())]


def test_every_post_without_the_csrf_token_is_refused(client: TestClient,
                                                     config: GuiConfig) -> None:
    paths = post_paths(config)
    assert "/act/create_user" in paths and "/data/upload" in paths
    for path in paths:
        if path in ("/login", "/logout"):
            continue  # their forms carry the token; see below
        answer = client.post(path, data={"database": "x"})
        assert answer.status_code == 403, path
        assert "CSRF" in answer.json()["error"]
    assert client.post("/logout", data={}).status_code == 403


def test_a_post_from_another_site_is_refused(client: TestClient) -> None:
    token = csrf_of(client)
    answer = client.post("/act/create_database", data={"database": "x"},
                         headers={"x-csrf-token": token, "origin": "http://elsewhere.example"})
    assert answer.status_code == 403


def test_only_loopback_names_are_answered(client: TestClient) -> None:
    assert client.get("/", headers={**HTML, "host": "elsewhere.example"}).status_code == 400
    assert client.get("/login", headers={"host": "localhost:5000"}).status_code != 400
    assert client.get("/login", headers={"host": "[::1]:5000"}).status_code != 400


@pytest.mark.parametrize("header", ["Forwarded", "X-Forwarded-For", "X-Forwarded-Host",
                                    "X-Forwarded-Proto", "X-Real-IP"])
def test_on_loopback_a_request_through_a_proxy_is_refused(client: TestClient,
                                                          header: str) -> None:
    for path in ("/", "/login", "/api/nodes", "/static/gui.js"):
        answer = client.get(path, headers={**HTML, header: "for=192.0.2.7"})
        assert answer.status_code == 403, (path, header)
        assert "refuses requests relayed by a proxy" in answer.json()["error"]
    token = csrf_of(client)
    answer = client.post("/act/create_database", data={"database": "x"},
                         headers={"x-csrf-token": token, header: "192.0.2.7"})
    assert answer.status_code == 403 and "proxy" in answer.json()["error"]


def test_with_its_login_the_front_end_may_stand_behind_a_proxy(config: GuiConfig) -> None:
    app = create_app(config, "0.0.0.0", tls=True)
    with TestClient(app, base_url="https://gui.example:5000") as client:
        login = client.get("/login", headers={"X-Forwarded-For": "192.0.2.7",
                                              "X-Forwarded-Proto": "https"})
        assert login.status_code == 200 and 'name="token"' in login.text


def test_an_unreachable_manager_is_shown_clearly(client: TestClient,
                                                 config: GuiConfig) -> None:
    page = client.get("/nodes", headers=HTML)
    assert page.status_code == 502
    assert f"Cannot reach {config.manager_url} DETAIL:" in page.text
    assert "Traceback" not in page.text
    for header in ("content-security-policy", "x-frame-options", "x-content-type-options"):
        assert header in page.headers
    token = csrf_of(client)
    answer = client.post("/act/create_database", data={"database": "shop"},
                         headers={"x-csrf-token": token})
    assert answer.status_code == 502
    assert answer.json()["error"].startswith(f"Cannot reach {config.manager_url}")
    typo = client.post("/act/create_user", headers={"x-csrf-token": token},
                       data={"username": "a", "password": "one", "password2": "two"})
    assert typo.status_code == 400 and typo.json() == {"error": "the two passwords differ"}


def test_static_assets_come_with_the_package(client: TestClient) -> None:
    page = client.get("/login").text + client.get("/", headers=HTML).text
    for asset in ("gui.js", "gui.css", "favicon.svg"):
        found = re.search(rf'/static/{re.escape(asset)}\?v=[0-9a-f]+', page)
        assert found, asset
        assert client.get(found.group(0)).status_code == 200
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from elsewhere


def test_beyond_loopback_a_user_logs_in_first(config: GuiConfig) -> None:
    app = create_app(config, "0.0.0.0", tls=True)
    with TestClient(app, base_url="https://gui.example:5000") as client:
        page = client.get("/", headers=HTML, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert client.get("/api/metrics").status_code == 401
        login = client.get("/login")
        assert login.status_code == 200 and 'name="token"' in login.text
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', login.text)
        assert token
        answer = client.post("/login", data={"csrf": token.group(1), "token": "abc def"})
        assert answer.status_code == 400
        assert "holds spaces or control characters" in answer.text
        answer = client.post("/login", data={"csrf": token.group(1), "token": "t0ken"})
        assert answer.status_code == 502  # the manager, asked about the token, is away
        assert "set-cookie" not in answer.headers


def test_a_form_is_read_up_to_a_bound(client: TestClient) -> None:
    token = csrf_of(client)
    answer = client.post("/act/create_database", headers={"x-csrf-token": token},
                         content=b"database=" + b"x" * 100_000)
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]


@pytest.mark.parametrize(("query", "error"), [
    ("node=%C2%B2", "node must be a node&#39;s number, or manager"),
    ("node=1&lines=%C2%B2", "lines must be a whole number"),
    ("lines=%E0%A5%A9", "lines must be a whole number"),  # a Devanagari three
    ("node=-1", "node must be a node&#39;s number, or manager"),
])
def test_a_log_asked_for_with_a_wrong_number_is_a_400_page(client: TestClient, query: str,
                                                            error: str) -> None:
    page = client.get(f"/logs?{query}", headers=HTML)
    assert page.status_code == 400
    assert error in page.text and "Traceback" not in page.text


def test_an_ended_session_goes_back_to_the_login_page(config: GuiConfig) -> None:
    app = create_app(config, "0.0.0.0", tls=True)
    with TestClient(app, base_url="https://gui.example:5000") as client:
        client.cookies.set("conpaassql_session", "no-such-session")
        page = client.get("/users", headers=HTML, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?ended=1"
        assert client.get("/api/nodes").json() == {"error": "your session has ended: "
                                                            "log in again"}
        answer = client.post("/act/create_database", data={"database": "x"},
                             headers={"x-csrf-token": "0" * 64})
        assert answer.status_code == 401  # said before the CSRF token is judged
        login = client.get("/login?ended=1")
        assert "your session has ended: log in again" in login.text
        # logging out of it clears the cookie, no form needed
        answer = client.post("/logout", data={}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
        assert "conpaassql_session=" in answer.headers["set-cookie"]


def test_the_csrf_token_is_bound_to_the_session(config: GuiConfig) -> None:
    app = create_app(config, "0.0.0.0", tls=True)
    sessions = app.state.gui.guard.sessions
    with TestClient(app, base_url="https://gui.example:5000") as client:
        client.cookies.set("conpaassql_session", sessions.open("token-of-a"))
        mine = csrf_of(client)
        client.cookies.set("conpaassql_session", sessions.open("token-of-b"))
        theirs = csrf_of(client)
        assert mine != theirs
        answer = client.post("/act/create_database", data={"database": "x"},
                             headers={"x-csrf-token": mine})
        assert answer.status_code == 403 and "CSRF" in answer.json()["error"]
        answer = client.post("/act/create_database", data={"database": "x"},
                             headers={"x-csrf-token": theirs})
        assert answer.status_code == 502  # past the guard, to the (absent) manager
        page = client.get("/", headers=HTML).text
        assert "token-of-b" not in page and "token-of-a" not in page
