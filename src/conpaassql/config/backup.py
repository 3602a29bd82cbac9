"""``[backup]``: where backups and archived binlogs are kept, and how often."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from conpaassql.config.ini import Section, relative_path
from conpaassql.config.restore_from import RestoreSource, restore_source
from conpaassql.config.schedule import Schedule, ScheduleError, parse_schedule
from conpaassql.errors import ConfigError

#: The keys of ``[backup]``.
BACKUP_KEYS = frozenset({
    "STORE", "ENDPOINT_URL", "REGION", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN",
    "ADDRESSING_STYLE", "PART_SIZE", "ARCHIVE_INTERVAL", "VERIFY",
    "RESTORE_FROM", "RESTORE_KEY", "RESTORE_KEY_FILE", "SCHEDULE", "RETENTION_DAYS"})
ADDRESSING_STYLES = ("auto", "path", "virtual")
#: ``verify``: which backups are verified (``verify_backup``) once done.
VERIFY_CHOICES = ("never", "after_full", "after_each")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MIB = 1 << 20


@dataclass(frozen=True)
class BackupConfig:
    """``[backup]``: where backups are kept. ``path`` for a local directory (None: the
    embedded default, ``<state dir>/backups``), or ``bucket`` (and ``prefix``) of an
    S3-compatible store. S3 credentials None: boto3's own (the environment's
    ``AWS_ACCESS_KEY_ID``..., a profile, an instance role)."""

    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"
    part_size: int = 8 * MIB  # bytes of each part of a multipart upload
    archive_interval: float = 5.0  # seconds between binlog archive passes (the RPO)
    verify: str = "never"  # one of VERIFY_CHOICES
    #: A new service's first node restored from there (``config.restore_from``).
    restore_from: RestoreSource | None = None
    schedule: Schedule | None = None  # None: backups only when asked
    retention_days: float | None = None  # None: everything kept

    @property
    def url(self) -> str:
        """The store, as configured (no secret): ``s3://bucket/prefix`` or ``file://``."""
        if self.bucket:
            return f"s3://{self.bucket}/{self.prefix}"
        return self.path.as_uri() if self.path else "file://<state dir>/backups"

    def directory(self, state_dir: Path) -> Path:
        """The file store's directory (for an S3 store too: its default would be)."""
        return self.path if self.path is not None else state_dir / "backups"

    @classmethod
    def from_section(cls, section: Section) -> BackupConfig:
        unknown = sorted(set(section.values) - BACKUP_KEYS)
        if unknown:
            raise ConfigError(section.where(unknown[0]), detail=f"unknown key(s) "
                              f"{', '.join(unknown)} (known: {', '.join(sorted(BACKUP_KEYS))})")
        style = (section.get("addressing_style", "auto") or "auto").lower()
        if style not in ADDRESSING_STYLES:
            raise ConfigError(section.where("addressing_style"),
                              detail=f"{style!r} is not one of {', '.join(ADDRESSING_STYLES)}")
        endpoint = section.get("endpoint_url")
        if endpoint and (urlsplit(endpoint).username or urlsplit(endpoint).password):
            raise ConfigError(section.where("endpoint_url"), detail="credentials go in "
                              "access_key_id and secret_access_key, not in the URL")
        if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ConfigError(section.where("endpoint_url"),
                              detail=f"{endpoint!r} is not an http:// or https:// URL")
        access, secret = section.get("access_key_id"), section.get("secret_access_key")
        if bool(access) != bool(secret):
            raise ConfigError(section.where("secret_access_key" if access else "access_key_id"),
                              detail="access_key_id and secret_access_key go together")
        verify = (section.get("verify", "never") or "never").lower()
        if verify not in VERIFY_CHOICES:
            raise ConfigError(section.where("verify"),
                              detail=f"{verify!r} is not one of {', '.join(VERIFY_CHOICES)}")
        path, bucket, prefix = _backup_store(section)
        restore_from = restore_source(
            section, lambda text, where: _parse_store(text, where, section.ini.path))
        if bucket is None and endpoint and (restore_from is None or not restore_from.bucket):
            raise ConfigError(section.where("endpoint_url"), detail="only for an s3:// store")
        return cls(path=path, bucket=bucket, prefix=prefix, endpoint_url=endpoint,
                   region=section.get("region"), access_key_id=access,
                   secret_access_key=secret, session_token=section.get("session_token"),
                   addressing_style=style,
                   part_size=section.integer("part_size", 8, 5, 5120) * MIB,
                   archive_interval=section.number("archive_interval", 5.0, 0.1),
                   verify=verify, restore_from=restore_from,
                   schedule=_schedule(section), retention_days=_retention(section))


def _schedule(section: Section) -> Schedule | None:
    text = section.get("schedule")
    if text is None or text.lower() == "none":
        return None
    try:
        return parse_schedule(text)
    except ScheduleError as exc:
        raise ConfigError(section.where("schedule"), detail=str(exc)) from None


#: The shortest ``retention_days``: 30 seconds, so a slip (``0.0001``, 9 s) is refused
#: while a trial or a test can still watch a short window go (real ones are days).
MIN_RETENTION_DAYS = 30 / 86400


def _retention(section: Section) -> float | None:
    text = section.get("retention_days")
    if text is None or text.lower() == "none":
        return None
    days = section.number("retention_days", 0.0, 0.0)
    if days < MIN_RETENTION_DAYS:
        raise ConfigError(section.where("retention_days"),
                          detail="must be at least 30 seconds (more than 0.000347 days; "
                          "leave it out to keep everything)")
    return days


def _backup_store(section: Section) -> tuple[Path | None, str | None, str]:
    """``file:///path``, a bare path (relative to the file), or ``s3://bucket/prefix``."""
    text = section.get("store")
    if text is None:
        return None, None, ""
    return _parse_store(text, section.where("store"), section.ini.path)


def _parse_store(text: str, where: str,
                 ini_path: str | None) -> tuple[Path | None, str | None, str]:
    parts = urlsplit(text)
    if parts.scheme == "s3":
        if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
            raise ConfigError(where, detail=f"{parts.netloc!r} is not a bucket name "
                              "(3 to 63 of a-z, 0-9, . and -)")
        if parts.query or parts.fragment:
            raise ConfigError(where, detail="an s3:// URL has no ?query or #fragment")
        return None, parts.netloc, parts.path.strip("/")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(where, detail="a file URL is file:///absolute/path")
        return Path(unquote(parts.path)), None, ""
    if parts.scheme:
        raise ConfigError(where, detail=f"{text!r}: a store is file:///path or "
                          "s3://bucket/prefix")
    return relative_path(text, ini_path), None, ""
