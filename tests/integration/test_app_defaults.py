"""What an application finds on a new service: the seed's user, utf8mb4, time zones.

One manager with a master and a slave seeded by a physical copy serves the module.
Users log in over TCP with the real mariadb client (TLS, the service's CA), as an
application would, with utf8mb4 as the connection's character set.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conpaassql.names import (
    DATABASE_PRIVILEGES,
    OWNER_GLOBAL_PRIVILEGES,
    OWNER_WITHHELD,
)
from tests.integration.harness import Manager

pytestmark = pytest.mark.integration

OWNER = "alice"
OWNER_PASSWORD = "Al1ce-seed pw"
EMOJI = ("😀", "😁", "🐬")
SEED_DUMP = """CREATE DATABASE shop;
USE shop;
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40)) ENGINE=InnoDB;
INSERT INTO items VALUES (1, 'apple'), (2, 'pear'), (3, 'plum');
"""


class Service:
    def __init__(self, manager: Manager, master: int, slave: int) -> None:
        self.manager = manager
        self.master = master
        self.slave = slave
        self.nodes = {n["id"]: n for n in manager.nodes()}

    def sync(self) -> None:
        self.manager.sync_slaves(self.master, [self.slave])

    def as_user(self, node_id: int, statement: str, user: str = OWNER,
                password: str = OWNER_PASSWORD) -> subprocess.CompletedProcess[str]:
        """``statement`` run by ``user`` over TCP and TLS, the connection in utf8mb4."""
        node = self.nodes[node_id]
        defaults = self.manager.defaults_file(user, password)
        try:
            return subprocess.run(
                ["mariadb", f"--defaults-extra-file={defaults}", "-h", node["ip"],
                 "-P", str(node.get("port") or 3306), "--ssl",
                 f"--ssl-ca={self.manager.ca_file}", "--default-character-set=utf8mb4",
                 "--batch", "--skip-column-names", "-e", statement],
                capture_output=True, text=True, timeout=30, check=False,
            )
        finally:
            defaults.unlink()

    def user_sql(self, node_id: int, statement: str) -> str:
        answer = self.as_user(node_id, statement)
        assert answer.returncode == 0, answer.stderr
        return answer.stdout

    def refused(self, node_id: int, statement: str) -> str:
        answer = self.as_user(node_id, statement)
        assert answer.returncode != 0, (statement, answer.stdout)
        return answer.stderr

    def root_sql(self, node_id: int, statement: str) -> str:
        answer = self.manager.sql(node_id, statement)
        assert answer.returncode == 0, answer.stderr
        return answer.stdout


@pytest.fixture(scope="module")
def service(template_cache: Path) -> Iterator[Service]:
    manager = Manager(template_cache).start()
    try:
        manager.post("add_nodes", count=2)
        master, slaves = manager.wait_topology(2)
        yield Service(manager, master, slaves[0])
    finally:
        manager.close()


def test_the_seed_user_owns_the_data(service: Service, tmp_path: Path) -> None:
    manager, master, slave = service.manager, service.master, service.slave
    # The seed's calls in order: a user without a database, then its dump.
    reply: dict[str, Any] = manager.post("configure_user", username=OWNER,
                                         password=OWNER_PASSWORD)
    assert reply["nodes"] == [master] and reply["created"] == [master]
    assert (reply["on"], reply["grant_option"]) == ("`%`.*", True)
    assert reply["privileges"] == ["ALL PRIVILEGES"]
    who = f"`{OWNER}`@`%`"
    assert sorted(reply["grants"]) == sorted([
        f"GRANT PROCESS, SHOW DATABASES ON *.* TO {who} IDENTIFIED BY PASSWORD '***'",
        f"GRANT SHOW VIEW ON `mysql`.* TO {who}",
        f"GRANT SELECT, EXECUTE, SHOW VIEW ON `sys`.* TO {who}",
        f"GRANT ALL PRIVILEGES ON `%`.* TO {who} WITH GRANT OPTION"]), reply["grants"]
    # Every privilege this server knows is given (on *.* or on every database) or withheld.
    known = {line.split("\t")[0].upper()
             for line in service.root_sql(master, "SHOW PRIVILEGES").splitlines()}
    given = set(OWNER_GLOBAL_PRIVILEGES) | set(DATABASE_PRIVILEGES)
    assert not given & set(OWNER_WITHHELD)
    assert known - {"USAGE", "GRANT OPTION", "PROXY"} == given | set(OWNER_WITHHELD)
    dump = tmp_path / "seed.sql"
    dump.write_text(SEED_DUMP, encoding="utf-8")
    assert manager.upload("send_mysqldump", "mysqldump", dump)["nodes"] == [master]

    # The user reads what was loaded, makes its own database and shares it.
    assert service.user_sql(master, "SELECT name FROM shop.items ORDER BY id").split() == [
        "apple", "pear", "plum"]
    service.user_sql(master, "CREATE DATABASE own; CREATE TABLE own.t (i INT PRIMARY KEY);"
                     "INSERT INTO own.t SELECT id FROM shop.items;"
                     "CREATE FUNCTION own.twice(i INT) RETURNS INT RETURN 2 * i;"
                     "CREATE TRIGGER own.bump BEFORE INSERT ON own.t FOR EACH ROW"
                     " SET NEW.i = own.twice(NEW.i);"
                     "INSERT INTO own.t VALUES (5)")
    manager.post("configure_user", username="app", password="app-pw", database="shop",
                 privileges="SELECT")
    service.user_sql(master, "GRANT SELECT ON own.* TO 'app'@'%'")
    assert service.as_user(master, "SELECT SUM(i) FROM own.t", "app",
                           "app-pw").stdout.split() == ["16"]
    service.sync()
    assert service.user_sql(slave, "SELECT i FROM own.t ORDER BY i").split() == [
        "1", "2", "3", "10"]


def test_the_seed_user_cannot_act_as_the_server(service: Service) -> None:
    manager, master, slave = service.manager, service.master, service.slave
    manager.post("configure_user", username=OWNER, password=OWNER_PASSWORD)
    manager.post("configure_user", username="helper", password="h3lper")
    service.user_sql(master, "CREATE DATABASE IF NOT EXISTS kept;"
                     "CREATE TABLE IF NOT EXISTS kept.t (i INT);"
                     # The owner may pass on what it has: mysql stays out of reach.
                     "GRANT ALL PRIVILEGES ON `%`.* TO 'helper'@'%'")
    service.sync()
    for node in (master, slave):
        assert "READ_ONLY ADMIN" in service.refused(node, "SET GLOBAL read_only = 0")
        assert "SHUTDOWN" in service.refused(node, "SHUTDOWN")
        assert "FILE" in service.refused(node, "SELECT 1 INTO OUTFILE 'x'")
        assert "RELOAD" in service.refused(node, "RESET MASTER")
        assert "BINLOG ADMIN" in service.refused(node, "SET SESSION sql_log_bin = 0")
        assert "SET USER" in service.refused(
            node, "CREATE DEFINER = root@localhost PROCEDURE kept.p() SELECT 1")
        assert "CREATE USER" in service.refused(
            node, "RENAME USER 'root'@'localhost' TO 'root'@'%'")
    # The system tables: a row in mysql.proc would be a routine that runs as root.
    for who, secret in ((OWNER, OWNER_PASSWORD), ("helper", "h3lper")):
        for statement in ("SELECT COUNT(*) FROM mysql.global_priv",
                          "INSERT INTO mysql.proc (db, name) VALUES ('kept', 'x')",
                          "ALTER PROCEDURE sys.ps_setup_show_enabled COMMENT 'x'",
                          "GRANT INSERT ON mysql.* TO 'app'@'%'"):
            answer = service.as_user(master, statement, who, secret)
            assert answer.returncode != 0 and "denied" in answer.stderr, (who, statement)
    assert "--read-only" in service.refused(slave, "INSERT INTO kept.t VALUES (10)")
    assert "--read-only" in service.refused(slave, "CREATE DATABASE other")
    assert service.root_sql(slave, "SELECT @@global.read_only").split() == ["1"]


def test_a_new_password_keeps_the_grants(service: Service) -> None:
    manager, master = service.manager, service.master
    first = manager.post("configure_user", username="keeper", password="k33per")
    again = manager.post("configure_user", username="keeper", password="n3w-pw")
    assert (again["created"], again["privileges"], again["on"]) == ([], [], None)
    assert again["grants"] == first["grants"] and "keeps its privileges" in again["note"]
    assert service.as_user(master, "SHOW GRANTS", "keeper", "n3w-pw").returncode == 0


def test_utf8mb4_everywhere(service: Service) -> None:
    manager, master, slave = service.manager, service.master, service.slave
    for node in (master, slave):
        assert service.root_sql(node, "SELECT @@character_set_server, @@collation_server,"
                                " @@slow_query_log").split() == [
            "utf8mb4", "utf8mb4_unicode_520_ci", "1"]
    made = manager.post("create_database", database="by_api")
    assert (made["character_set"], made["collation"]) == ("utf8mb4", "utf8mb4_unicode_520_ci")
    manager.post("configure_user", username=OWNER, password=OWNER_PASSWORD)
    service.user_sql(master, "CREATE DATABASE by_user")
    values = ", ".join(f"('{e}')" for e in EMOJI)
    for database in ("by_api", "by_user"):
        # Distinct emoji are distinct keys (utf8mb4_general_ci would call them equal).
        service.user_sql(master, f"CREATE TABLE {database}.t (s VARCHAR(8) PRIMARY KEY);"
                         f"INSERT INTO {database}.t VALUES {values}")
    service.sync()
    for node in (master, slave):
        for database in ("by_api", "by_user"):
            shown = service.user_sql(node, f"SELECT s FROM {database}.t ORDER BY HEX(s)")
            assert shown.split() == sorted(EMOJI, key=lambda e: e.encode()), (node, database)


def test_named_time_zones_on_the_master_and_on_a_copy(service: Service) -> None:
    for node in (service.master, service.slave):
        answer = service.root_sql(
            node, "SELECT CONVERT_TZ('2026-07-01 12:00:00', 'UTC', 'Europe/Paris'),"
            " CONVERT_TZ('2026-01-01 12:00:00', 'UTC', 'America/New_York'),"
            " (SELECT COUNT(*) FROM mysql.time_zone_name) > 400")
        assert answer.split("\t") == ["2026-07-01 14:00:00", "2026-01-01 07:00:00", "1\n"], node
        # The local cloud keeps MariaDB's small sizes (and the harness's 32M pool).
        assert service.root_sql(node, "SELECT @@innodb_buffer_pool_size, @@max_connections"
                                ).split() == [str(32 << 20), "151"]


def plain_tcp(manager: Manager, node: dict[str, Any], user: str,
              password: str) -> subprocess.CompletedProcess[str]:
    """``SELECT @@max_connections`` by ``user`` over TCP without TLS."""
    defaults = manager.defaults_file(user, password)
    try:
        return subprocess.run(
            ["mariadb", f"--defaults-extra-file={defaults}", "-h", node["ip"], "-P",
             str(node.get("port") or 3306), "--skip-ssl", "--batch", "--skip-column-names",
             "-e", "SELECT @@max_connections"],
            capture_output=True, text=True, timeout=30, check=False)
    finally:
        defaults.unlink()


def test_plain_tcp_only_where_the_options_allow_it(service: Service,
                                                   template_cache: Path) -> None:
    manager, master = service.manager, service.master
    manager.post("configure_user", username=OWNER, password=OWNER_PASSWORD)
    # MariaDB answers a login without TLS as it answers a wrong password.
    refused = plain_tcp(manager, service.nodes[master], OWNER, OWNER_PASSWORD)
    assert refused.returncode != 0 and "ERROR 1045" in refused.stderr, refused
    assert service.user_sql(master, "SELECT @@require_secure_transport").split() == ["1"]

    # The service's options go over the defaults: plain TCP allowed, more connections.
    allowing = Manager(template_cache)
    try:
        text = allowing.config_file.read_text(encoding="utf-8")
        allowing.config_file.write_text(text.replace(
            "LOCAL_MYSQL_OPTIONS = innodb_buffer_pool_size=32M",
            "LOCAL_MYSQL_OPTIONS = innodb_buffer_pool_size=32M, require_secure_transport=OFF,"
            " max_connections=300"), encoding="utf-8")
        allowing.start()
        allowing.post("add_nodes", count=1)
        allowing.wait_topology(1)
        [node] = allowing.nodes()
        allowing.post("configure_user", username=OWNER, password=OWNER_PASSWORD)
        answer = plain_tcp(allowing, node, OWNER, OWNER_PASSWORD)
        assert (answer.returncode, answer.stdout.split()) == (0, ["300"]), answer.stderr
    finally:
        allowing.close()


def client_certificate(manager: Manager, target: Path) -> None:
    """``client-cert.pem``, ``client-key.pem`` and ``cacert.pem`` in ``target``, as
    sysbench's ``--mysql-ssl=on`` reads them: made by ``conpaassql-client
    client_certificate``, the key made here and the certificate signed by the service."""
    done = subprocess.run(
        [sys.executable, "-m", "conpaassql.client", "127.0.0.1", str(manager.port),
         "client_certificate", str(target), "--label", "sysbench"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "mysql-client-sysbench" in done.stdout


def test_sysbench_over_tls_against_the_master(service: Service, tmp_path: Path) -> None:
    manager, master, slave = service.manager, service.master, service.slave
    manager.post("configure_user", username=OWNER, password=OWNER_PASSWORD)
    service.user_sql(master, "CREATE DATABASE sbtest")
    client_certificate(manager, tmp_path)
    node = service.nodes[master]
    common = ["--mysql-host=" + node["ip"], f"--mysql-port={node.get('port') or 3306}",
              f"--mysql-user={OWNER}", "--mysql-ssl=on", "--tables=1", "--table-size=2000"]
    # sysbench takes the password on its command line only; this one is a test's.
    common.append(f"--mysql-password={OWNER_PASSWORD}")
    for step in (["prepare"], ["--time=5", "--threads=2", "run"]):
        done = subprocess.run(["sysbench", "oltp_read_write", *common, *step], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "transactions:" in done.stdout
    service.sync()
    checksums = [service.root_sql(n, "CHECKSUM TABLE sbtest.sbtest1") for n in (master, slave)]
    assert checksums[0] == checksums[1] and checksums[0].split()[-1] != "0", checksums
