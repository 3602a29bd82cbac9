"""What cloud-init does with a ``#cloud-config``'s ``write_files`` at a VM's first boot,
done under a directory that plays the VM's root (the stand-in clouds' images)."""

from __future__ import annotations

import base64
import gzip
import os
from pathlib import Path
from typing import Any

import yaml

#: cloud-init's names of its content encodings.
BASE64 = {"b64", "base64"}
GZIP_BASE64 = {"gz+b64", "gzip+base64", "gz+base64", "gzip+b64"}


def cloud_config(user_data: str) -> dict[str, Any]:
    if not user_data.startswith("#cloud-config"):
        raise ValueError("not a #cloud-config")
    config = yaml.safe_load(user_data)
    if not isinstance(config, dict):
        raise ValueError("a #cloud-config is a mapping")
    return config


def write_files(user_data: str, root: Path) -> list[Path]:
    """Write each ``write_files`` entry under ``root`` with its permissions; the paths."""
    written = []
    for entry in cloud_config(user_data).get("write_files") or []:
        content = entry.get("content", "")
        encoding = str(entry.get("encoding", "text")).lower()
        if encoding in BASE64:
            data = base64.b64decode(content)
        elif encoding in GZIP_BASE64:
            data = gzip.decompress(base64.b64decode(content))
        elif encoding == "text":
            data = str(content).encode("utf-8")
        else:
            raise ValueError(f"unknown encoding {encoding}")
        path = root / str(entry["path"]).lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = int(str(entry.get("permissions", "0644")), 8)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(path, mode)
        written.append(path)
    return written
