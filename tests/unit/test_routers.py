"""Routers known to the manager (configured, registered, kept), and the certificates that
name them: issued by the service's CA, checked by the agent before it serves one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conpaassql.agent.settings import INSTALLED_MARK, AgentSettings
from conpaassql.config import IniFile, ManagerConfig, RouterConfig
from conpaassql.context import NodeContext
from conpaassql.errors import ConfigError
from conpaassql.manager.authority import Authority
from conpaassql.manager.routers import RegisterRouterParams, Routers
from conpaassql.manager.store import Store
from conpaassql.rpc.certificates import check_holder_certificate, names_in_pem

SERVICE = "aa11bb22"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "manager.sqlite")
    yield opened
    opened.close()


def params(name: str, writer: str = "127.0.0.1", readers: str = "127.0.0.1",
           hosts: tuple[str, ...] = ()) -> RegisterRouterParams:
    return RegisterRouterParams.model_validate({
        "name": name, "writer": {"host": writer, "port": 3306},
        "readers": {"host": readers, "port": 3307}, "hosts": list(hosts)})


def test_the_configuration_names_a_router() -> None:
    config = ManagerConfig.from_ini(IniFile.from_text(
        "[router]\nwriter = 10.0.0.5:3306\nreaders = [fd00::5]:3307\nhosts = db.example, "
        "10.0.0.6\n"))
    assert config.router == RouterConfig(("10.0.0.5", 3306), ("fd00::5", 3307), "configured",
                                         ("db.example", "10.0.0.6"))
    assert ManagerConfig.from_ini(IniFile.from_text("[manager]\n")).router is None


@pytest.mark.parametrize("text", ["writer = 10.0.0.5\nreaders = 10.0.0.5:3307",
                                  "writer = 10.0.0.5:0\nreaders = 10.0.0.5:3307",
                                  "writer = bad host:1\nreaders = 10.0.0.5:3307",
                                  "writer = 10.0.0.5:3306"])
def test_a_bad_router_configuration_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"\[router\]"):
        ManagerConfig.from_ini(IniFile.from_text(f"[router]\n{text}\n"))


def test_registered_routers_are_kept_and_updated(store: Store) -> None:
    routers = Routers(store, None)
    assert routers.endpoints() is None and routers.known() == []
    first, changed = routers.register(params("r1", hosts=("db.example",)))
    assert changed and first["source"] == "registered"
    assert routers.names() == ["127.0.0.1", "db.example"]
    _, changed = routers.register(params("r1", hosts=("db.example",)))
    assert not changed  # the same names: no certificate to issue again
    time.sleep(0.01)
    _, changed = routers.register(params("r2", writer="10.0.0.9", readers="0.0.0.0"))
    assert changed and "0.0.0.0" not in routers.names()  # a wildcard names no server
    assert routers.endpoints() == {"writer": {"host": "10.0.0.9", "port": 3306},
                                   "readers": {"host": "0.0.0.0", "port": 3307}}
    store.close()
    again = Routers(Store(store.path), None)
    assert [r["name"] for r in again.known()] == ["r1", "r2"]
    _, changed = again.register(params("r1", writer="10.0.0.7"))
    assert changed and [r["name"] for r in again.known()] == ["r2", "r1"]
    assert again.endpoints() is not None and again.endpoints()["writer"]["host"] == "10.0.0.7"
    again.store.close()


def test_a_configured_router_gives_the_endpoints(store: Store) -> None:
    routers = Routers(store, RouterConfig(("10.0.0.5", 3306), ("10.0.0.5", 3307)))
    routers.register(params("r1"))
    assert routers.endpoints() == {"writer": {"host": "10.0.0.5", "port": 3306},
                                   "readers": {"host": "10.0.0.5", "port": 3307}}
    assert [r["source"] for r in routers.known()] == ["configuration", "registered"]
    assert routers.names() == ["10.0.0.5", "127.0.0.1"]


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority]:
    root = tmp_path_factory.mktemp("pki")
    return (Authority.load_or_create(root / "ours", SERVICE),
            Authority.load_or_create(root / "theirs", SERVICE))


def test_a_node_certificate_names_its_addresses(
        authorities: tuple[Authority, Authority]) -> None:
    ours, _ = authorities
    issued = ours.issue_node(3, "127.0.0.13", ips=("127.0.0.1", "127.0.0.13"),
                             hosts=("db.example",))
    names = check_holder_certificate(issued.cert_pem, issued.key_pem,
                                     ours.ca_pem.encode("ascii"), SERVICE, "node-3")
    assert names == sorted(["127.0.0.1", "127.0.0.13", "db.example",
                            f"node-3.{SERVICE}.conpaassql"])
    assert names_in_pem(issued.cert_pem.encode("ascii")) == names


def test_an_agent_takes_only_its_own_certificate(
        authorities: tuple[Authority, Authority]) -> None:
    ours, theirs = authorities
    ca = ours.ca_pem.encode("ascii")
    mine, other = ours.issue_node(3), ours.issue_node(4)
    cases = [
        (other.cert_pem, other.key_pem, "not node-3's"),
        (theirs.issue_node(3).cert_pem, mine.key_pem, "not from the service's CA"),
        (mine.cert_pem, other.key_pem, "not the certificate's"),
        ("-----BEGIN CERTIFICATE-----\nxyz\n-----END CERTIFICATE-----\n", mine.key_pem,
         "not a PEM"),
    ]
    for cert, key, reason in cases:
        with pytest.raises(ValueError, match=reason) as caught:
            check_holder_certificate(cert, key, ca, SERVICE, "node-3")
        assert "PRIVATE" not in str(caught.value)
    with pytest.raises(ValueError, match="not node-3's"):
        check_holder_certificate(mine.cert_pem, mine.key_pem, ca, "cc33dd44", "node-3")


def _settings(tmp_path: Path, authority: Authority, ini: str = "",
              **context: object) -> AgentSettings:
    issued = authority.issue_node(4)
    text = NodeContext(manager_url="https://127.0.0.1:50001/", service_id=SERVICE, node_id=4,
                       secret="s", root_password="p", ip="127.0.0.14",
                       data_dir=str(tmp_path / "node"), ca_cert=authority.ca_pem,
                       tls_cert=issued.cert_pem, tls_key=issued.key_pem,
                       **context).render()  # type: ignore[arg-type]
    (tmp_path / "context").write_text(text, encoding="utf-8")
    config = tmp_path / "agent.cnf"
    config.write_text(ini, encoding="utf-8")
    return AgentSettings.load(tmp_path / "context", config)


def test_health_port_defaults_to_the_agent_port_plus_8(
        tmp_path: Path, authorities: tuple[Authority, Authority]) -> None:
    ours, _ = authorities
    assert _settings(tmp_path, ours).health_port == 60008
    assert _settings(tmp_path, ours, agent_port=61000).health_port == 61008
    assert _settings(tmp_path, ours, health_port=7000).health_port == 7000
    assert _settings(tmp_path, ours, "[agent]\nhealth_port = 7001\nhealth_max_lag = 5\n",
                     health_port=7000).health_port == 7001
    assert _settings(tmp_path, ours, "[agent]\nhealth_max_lag = 5\n").health_max_lag == 5.0


def test_an_installed_certificate_outlives_the_agents_restart(
        tmp_path: Path, authorities: tuple[Authority, Authority]) -> None:
    ours, _ = authorities
    settings = _settings(tmp_path, ours)
    files = settings.write_tls_files()
    first = files.cert.read_text(encoding="ascii")
    installed = ours.issue_node(4, "127.0.0.14")
    files.cert.write_text(installed.cert_pem, encoding="ascii")
    settings.write_tls_files()  # no mark: the context's certificate is written again
    assert files.cert.read_text(encoding="ascii") == first
    files.cert.write_text(installed.cert_pem, encoding="ascii")
    (files.cert.parent / INSTALLED_MARK).write_text("installed\n", encoding="ascii")
    settings.write_tls_files()
    assert files.cert.read_text(encoding="ascii") == installed.cert_pem
