"""``[backup] restore_from`` read from the configuration (its forms, its key, its
errors), and ``[backup] verify``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from conpaassql.config import BackupConfig, IniFile, ManagerConfig
from conpaassql.config.restore_from import parse_moment, split_source
from conpaassql.errors import ConfigError

BACKUP = "20261207T103000Z-full-3fa2c1"
NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()


def backup_section(text: str, env: dict[str, str] | None = None) -> BackupConfig:
    return ManagerConfig.from_ini(IniFile.from_text(text, env or {}, "/etc/m.cnf")).backup


def test_a_backup_of_a_file_store() -> None:
    source = backup_section(f"[backup]\nrestore_from = file:///srv/svc1/backups#{BACKUP}\n"
                            "restore_key_file = keys/svc1\n").restore_from
    assert source is not None
    assert (source.path, source.bucket, source.backup, source.time, source.latest) == (
        Path("/srv/svc1/backups"), None, BACKUP, None, False)
    assert source.key_file == Path("/etc/keys/svc1") and source.key is None
    assert source.store == "file:///srv/svc1/backups" and source.what == f"backup {BACKUP}"


def test_a_time_of_an_s3_store_with_its_key_from_the_environment() -> None:
    key = "k" * 43
    config = backup_section(
        "[backup]\nstore = file:///srv/own\nendpoint_url = http://127.0.0.1:9000\n"
        "restore_from = s3://svc1-backups/prod@2026-12-07 12:00:00\n"
        "restore_key = $OTHER_KEY\n", {"OTHER_KEY": key})
    source = config.restore_from
    assert source is not None
    assert (source.bucket, source.prefix, source.time) == ("svc1-backups", "prod", NOON)
    assert source.key == key and key not in repr(config)
    assert source.what == "2026-12-07 12:00:00 UTC"
    latest = backup_section("[backup]\nrestore_from = /srv/b@latest\n").restore_from
    assert latest is not None and latest.latest and latest.path == Path("/srv/b")
    assert latest.key is None and latest.key_file is None  # this service's own key
    assert backup_section("[backup]\n").restore_from is None


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-12-07 12:00:00", NOON), ("2026-12-07T12:00:00Z", NOON),
    ("2026-12-07T13:00:00+01:00", NOON), (str(int(NOON)), NOON), ("1.5", 1.5)])
def test_the_times(text: str, moment: float) -> None:
    assert parse_moment(text) == moment
    assert split_source(f"file:///a@b@{text}") == ("file:///a@b", None, moment, False)


@pytest.mark.parametrize(("line", "error"), [
    ("restore_from = file:///srv/b", "no backup nor time"),
    (f"restore_from = file:///srv/b#{BACKUP[:-1]}", "is not a backup id"),
    ("restore_from = file:///srv/b@yesterday", "is not a time"),
    ("restore_from = file:///srv/b@-5", "is not a time"),
    (f"restore_from = #{BACKUP}", "no store"),
    (f"restore_from = ftp://x/y#{BACKUP}", "a store is file:///path or s3://"),
    (f"restore_from = s3://B/x#{BACKUP}", "is not a bucket name"),
    ("restore_key = abc", "only with restore_from"),
    ("restore_key_file = abc", "only with restore_from"),
    (f"restore_from = /b#{BACKUP}\nrestore_key = a\nrestore_key_file = b", "not both"),
    ("verify = always", "is not one of never, after_full, after_each"),
])
def test_the_errors(line: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        backup_section(f"[backup]\n{line}\n")


def test_the_verify_setting() -> None:
    assert backup_section("[backup]\n").verify == "never"
    assert backup_section("[backup]\nverify = After_Full\n").verify == "after_full"
    assert backup_section("[backup]\nverify = after_each\n").verify == "after_each"
