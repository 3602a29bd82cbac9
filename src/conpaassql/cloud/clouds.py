"""The service's clouds: one driver per configured cloud, found by name.

``[iaas]`` is the cloud named ``default``; each ``[iaas_NAME]`` section adds the
cloud ``NAME``. A node belongs to the cloud it was created on, and every verb on
it goes to that cloud's driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from conpaassql.cloud.base import CloudDriver
from conpaassql.config import CloudConfig, LibcloudConfig, LocalCloudConfig, OpenNebulaConfig
from conpaassql.errors import CloudError, ConfigError

#: The names nodes were stored under before a service had several clouds (its one
#: cloud was named after its driver).
LEGACY_NAMES = {"LOCAL": "local", "OPENNEBULA_XMLRPC": "opennebula"}


class Clouds:
    """The drivers of the service's clouds, the default one first."""

    def __init__(self, drivers: list[CloudDriver]) -> None:
        if not drivers:
            raise ValueError("a service needs at least one cloud")
        self._drivers = {driver.cloud_name: driver for driver in drivers}
        self.default = drivers[0]

    def __iter__(self) -> Iterator[CloudDriver]:
        return iter(self._drivers.values())

    @property
    def names(self) -> list[str]:
        return list(self._drivers)

    def get(self, name: str) -> CloudDriver:
        driver = self._drivers.get(name)
        if driver is None:
            raise CloudError(f"no cloud named {name!r} (known: {', '.join(self._drivers)})")
        return driver

    def knows(self, name: str) -> bool:
        return name in self._drivers

    async def prepare(self) -> None:
        await asyncio.gather(*(driver.prepare() for driver in self))


def legacy_renames(clouds: tuple[CloudConfig, ...]) -> dict[str, str]:
    """Old cloud names of stored nodes -> the configured cloud they are on: the default
    cloud's driver's old name, unless a cloud of that name is configured."""
    default = clouds[0]
    old = LEGACY_NAMES.get(default.driver)
    if old is None or any(cloud.name == old for cloud in clouds):
        return {}
    return {old: default.name}


def build_driver(cloud: CloudConfig, state_dir: Path, service_id: str) -> CloudDriver:
    """The driver of one configured cloud (a cloud's library is imported only if used)."""
    settings = cloud.settings
    if isinstance(settings, LocalCloudConfig):
        from conpaassql.cloud.local import LocalDriver

        return LocalDriver(state_dir, settings, cloud_name=cloud.name)
    if isinstance(settings, OpenNebulaConfig):
        from conpaassql.cloud.opennebula import OpenNebulaDriver

        return OpenNebulaDriver(settings, service_id, cloud_name=cloud.name)
    if isinstance(settings, LibcloudConfig):
        from conpaassql.cloud.libcloud_driver import LibcloudDriver

        return LibcloudDriver(settings, service_id, cloud_name=cloud.name)
    raise ConfigError(cloud.name, detail=f"unknown driver {cloud.driver}")


def build_clouds(clouds: tuple[CloudConfig, ...], state_dir: Path, service_id: str) -> Clouds:
    return Clouds([build_driver(cloud, state_dir, service_id) for cloud in clouds])
