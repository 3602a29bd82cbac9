"""What do the cloud drivers cost? A node made through OpenNebula's XML-RPC (pyone) and
through Apache Libcloud's EC2 driver, against the same node on the local cloud.

Run from the repository root::

    .venv/bin/python bench/clouds.py

One manager with three clouds: ``default`` (local), ``one`` (OpenNebula) and ``aws``
(EC2), the last two stand-in clouds running in this process (the tests' stand-ins:
pyone and Libcloud talk to them over HTTP; their VMs boot real nodes on this host,
through the image's boot script and from cloud-init user data). The master is a local
node. Measured, each round in a rotated order of the clouds:

1. a slave added on each cloud: ``add_nodes`` to RUNNING, and to replicating (copied
   from the master over TLS); the ratio of each cloud to the local cloud is what its
   driver and contextualization add;
2. a slave each cloud loses (its VM deleted behind the manager's back, once older
   than the grace a cloud's listing may lag by): the loss to the node TERMINATED
   (detection), and to its replacement replicating;
3. each driver's verbs in this process against its stand-in (no VM boots): create,
   list (20 nodes of the service among 20 of another), destroy;
4. the manager's resident memory, idle, with the three clouds against a local-only one.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchlib import (
    BenchError,
    ManagerProcess,
    QuietMachine,
    err,
    median,
    order,
    quiet_signals,
    run_measured,
    runs_of,
    vmrss_mb,
)
from conpaassql.cloud.base import CloudDriver, NodeRequest
from conpaassql.cloud.libcloud_driver import LibcloudDriver
from conpaassql.cloud.local import stop_node_processes
from conpaassql.cloud.opennebula import OpenNebulaDriver
from conpaassql.config import LibcloudConfig, OpenNebulaConfig
from conpaassql.context import NodeContext
from conpaassql.domain.diagnosis import Thresholds
from testbed.manager import SubnetClaim, wait_until
from testbed.standins.ec2 import KEY, SECRET, Ec2StandIn
from testbed.standins.machines import Machines
from testbed.standins.opennebula import SEED_SECTION, SEED_TEMPLATE, OpenNebulaStandIn

CLOUDS = ("default", "one", "aws")
CLOUD_GRACE = Thresholds().cloud_grace
ONE_USER, ONE_PASSWORD = "oneadmin", "bench-Pa55"


@dataclass
class Results:
    running: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CLOUDS})
    slave: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CLOUDS})
    detected: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CLOUDS})
    replaced: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CLOUDS})
    verbs: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    rss: dict[str, float | None] = field(default_factory=dict)
    total_s: float = 0.0


@dataclass
class Service:
    manager: ManagerProcess
    one: OpenNebulaStandIn
    ec2: Ec2StandIn
    timeout: float

    def state(self, node_id: int) -> dict[str, Any]:
        return self.manager.node(node_id)

    def replicating(self, node_id: int) -> bool:
        node = self.state(node_id)
        if node["state"] in ("FAILED", "TERMINATED"):
            raise BenchError(f"node {node_id} is {node['state']}")
        seen = node["replication"]
        return node["role"] == "slave" and seen["io_running"] == "Yes" and \
            seen["sql_running"] == "Yes" and not seen["copying"]

    def add_slave(self, cloud: str) -> tuple[int, float, float]:
        """A slave on ``cloud``: its id, seconds to RUNNING and to replicating."""
        started = time.perf_counter()
        node_id = int(self.manager.post("add_nodes", count=1, cloud=cloud)["serviceNode"]["id"])
        wait_until(lambda: self.state(node_id)["state"] == "RUNNING", self.timeout,
                   0.05, f"node {node_id} RUNNING")
        running = time.perf_counter() - started
        wait_until(lambda: self.replicating(node_id), self.timeout, 0.05,
                   f"node {node_id} replicating")
        return node_id, running, time.perf_counter() - started

    def remove(self, node_id: int) -> None:
        self.manager.post("remove_nodes", serviceNodeId=node_id)
        wait_until(lambda: self.state(node_id)["state"] == "TERMINATED", self.timeout, 0.1,
                   f"node {node_id} removed")

    def lose(self, node_id: int) -> None:
        """The node's VM is deleted behind the manager's back."""
        node = self.state(node_id)
        if node["cloud"] == "one":
            self.one.vanish(int(node["cloud_ref"]))
        elif node["cloud"] == "aws":
            self.ec2.terminate_behind_the_managers_back(node["cloud_ref"])
        else:
            directory = self.manager.node_dir(node_id)
            stop_node_processes(directory, grace=0)
            shutil.rmtree(directory)

    def replacement_of(self, lost: int, cloud: str) -> int | None:
        for node in self.manager.get("list_nodes")["nodes"]:
            if node["id"] > lost and node["cloud"] == cloud:
                return int(node["id"])
        return None


def cloud_sections(one: OpenNebulaStandIn, template: Path, ec2: Ec2StandIn) -> str:
    section = "".join(f"{key} = {value}\n" for key, value in SEED_SECTION.items())
    return (
        "probe_interval = 0.5\ncloud_list_interval = 1\n"
        f"[iaas_one]\nDRIVER = OPENNEBULA_XMLRPC\nOPENNEBULA_URL = {one.url}\n"
        f"OPENNEBULA_USER = {ONE_USER}\nOPENNEBULA_PASSWORD = {ONE_PASSWORD}\n"
        f"[onevm_agent_template]\nFILENAME = {template}\n{section}"
        "[iaas_aws]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\n"
        f"KEY = {KEY}\nSECRET = {SECRET}\nREGION = us-east-1\nENDPOINT = {ec2.url}\n"
        "DRIVER_OPTIONS = signature_version=4\n"
        f"IMAGE = {ec2.image}\nSIZE = t3.micro\nNETWORK = {ec2.subnet}\n")


def idle_rss(root: Path, subnet: int, options: str, timeout: float) -> float | None:
    """The resident memory of a manager with no node, after it settled."""
    root.mkdir()
    manager = ManagerProcess(root, subnet, "32M", options)
    try:
        manager.start(timeout)
        time.sleep(3.0)
        return vmrss_mb(manager.pid)
    finally:
        manager.close()


def measure(args: argparse.Namespace, root: Path, results: Results) -> None:
    quiet = QuietMachine()
    claims = [SubnetClaim(None) for _ in range(3)]
    local, one_vms, ec2_vms = (claim.subnet for claim in claims)
    (root / "service").mkdir()
    cache = root / "service" / "cache"  # the manager's datadir template, for every node
    one_machines = Machines(root / "one", cache, one_vms)
    ec2_machines = Machines(root / "ec2", cache, ec2_vms)
    one = OpenNebulaStandIn(user=ONE_USER, password=ONE_PASSWORD,
                            boot=one_machines.boot_opennebula_vm,
                            destroy=one_machines.stop_opennebula_vm)
    ec2 = Ec2StandIn(subnet=ec2_vms, boot=ec2_machines.boot_ec2_instance,
                     destroy=ec2_machines.stop_ec2_instance)
    template = root / "agent.template"
    template.write_text(SEED_TEMPLATE)
    sections = cloud_sections(one, template, ec2)
    manager = ManagerProcess(root / "service", local, "32M", sections)
    if manager.cache_dir != cache:
        raise BenchError(f"the manager's template cache moved to {manager.cache_dir}")
    try:
        quiet.wait("the memory figures")
        results.rss["local only"] = idle_rss(root / "idle-local", local, "", args.timeout)
        results.rss["three clouds"] = idle_rss(root / "idle-clouds", local, sections,
                                               args.timeout)
        manager.start(args.timeout)
        service = Service(manager, one, ec2, args.timeout)
        master = manager.add_node(args.timeout)
        err.print(f"master: node {master} (local)")
        for index in range(args.rounds):
            for cloud in order(CLOUDS, index):
                quiet.wait(f"a slave on {cloud}")
                node_id, running, slave = service.add_slave(cloud)
                results.running[cloud].append(running)
                results.slave[cloud].append(slave)
                err.print(f"round {index + 1}: slave on {cloud}: RUNNING {running:.3f}s, "
                          f"replicating {slave:.3f}s")
                service.remove(node_id)
        for index in range(args.lost_rounds):
            for cloud in order(CLOUDS, index):
                added = time.monotonic()
                lost, _, _ = service.add_slave(cloud)
                quiet.wait(f"a lost node on {cloud}")
                # A node younger than the grace a cloud's listing may lag by is not
                # judged gone yet: lose one older than that, as nodes are lost.
                time.sleep(max(0.0, CLOUD_GRACE + 0.5 - (time.monotonic() - added)))
                started = time.perf_counter()
                service.lose(lost)
                wait_until(lambda n=lost: service.state(n)["state"] == "TERMINATED",
                           args.timeout, 0.05, f"node {lost} noticed lost")
                results.detected[cloud].append(time.perf_counter() - started)
                new = wait_until(lambda n=lost, c=cloud: service.replacement_of(n, c),
                                 args.timeout, 0.05, f"a replacement of node {lost}")
                wait_until(lambda n=new: service.replicating(n), args.timeout, 0.05,
                           f"node {new} replicating")
                results.replaced[cloud].append(time.perf_counter() - started)
                err.print(f"lost on {cloud}: TERMINATED after "
                          f"{results.detected[cloud][-1]:.3f}s, replacement replicating "
                          f"after {results.replaced[cloud][-1]:.3f}s")
                service.remove(new)
        manager.shutdown(args.timeout)
    finally:
        quiet_signals()
        manager.close()
        for machines in (one_machines, ec2_machines):
            machines.close()
        one.close()
        ec2.close()
        for claim in claims:
            claim.release()
    results.verbs = driver_verbs(args.verb_nodes)


def driver_verbs(count: int) -> dict[str, dict[str, list[float]]]:
    """Each driver's create, list and destroy against its stand-in, timed in this process."""
    one_claim, ec2_claim = SubnetClaim(None), SubnetClaim(None)
    one = OpenNebulaStandIn(user=ONE_USER, password=ONE_PASSWORD)
    ec2 = Ec2StandIn(subnet=ec2_claim.subnet)
    folder = Path(tempfile.mkdtemp(prefix="cqb-verbs-", dir="/tmp"))
    try:
        (folder / "agent.template").write_text(SEED_TEMPLATE)
        one_config = OpenNebulaConfig(url=one.url, user=ONE_USER, password=ONE_PASSWORD,
                                      template_file=folder / "agent.template",
                                      template_values=dict(SEED_SECTION))
        ec2_config = LibcloudConfig(provider="EC2", key=KEY, secret=SECRET, image=ec2.image,
                                    size="t3.micro", region="us-east-1", endpoint=ec2.url,
                                    driver_options={"signature_version": "4"},
                                    network=(ec2.subnet,))
        drivers: dict[str, Callable[[str], CloudDriver]] = {
            "one": lambda service: OpenNebulaDriver(one_config, service),
            "aws": lambda service: LibcloudDriver(ec2_config, service),
        }
        return {name: asyncio.run(time_verbs(make("bench"), make("other"), count))
                for name, make in drivers.items()}
    finally:
        one.close()
        ec2.close()
        shutil.rmtree(folder, ignore_errors=True)
        one_claim.release()
        ec2_claim.release()


async def time_verbs(driver: CloudDriver, other: CloudDriver,
                     count: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"create": [], "list": [], "destroy": []}
    refs = []
    for node_id in range(1, count + 1):
        await other.create_node(NodeRequest(node_id, "x", context(node_id, "other")))
        started = time.perf_counter()
        made = await driver.create_node(NodeRequest(node_id, "x", context(node_id, "bench")))
        timings["create"].append(time.perf_counter() - started)
        refs.append(made.ref)
    for _ in range(count):
        started = time.perf_counter()
        listed = await driver.list_nodes()
        timings["list"].append(time.perf_counter() - started)
        if len(listed) != count:
            raise BenchError(f"{type(driver).__name__} listed {len(listed)} of {count} nodes")
    for ref in refs:
        started = time.perf_counter()
        await driver.destroy_node(ref)
        timings["destroy"].append(time.perf_counter() - started)
    return timings


def context(node_id: int, service: str) -> NodeContext:
    return NodeContext(manager_url="https://127.0.0.1:50001/", service_id=service,
                       node_id=node_id, secret="bench-secret", root_password="bench-root")


def summary(results: Results) -> dict[str, Any]:
    base_running = median(results.running["default"])
    base_slave = median(results.slave["default"])
    clouds = {}
    for cloud in CLOUDS:
        running, slave = median(results.running[cloud]), median(results.slave[cloud])
        clouds[cloud] = {
            "running_s": round(running, 4), "slave_s": round(slave, 4),
            "running_ratio": round(running / base_running, 4),
            "slave_ratio": round(slave / base_slave, 4),
            "detected_s": round(median(results.detected[cloud]), 4)
            if results.detected[cloud] else None,
            "replaced_s": round(median(results.replaced[cloud]), 4)
            if results.replaced[cloud] else None,
            "runs": {key: [round(v, 4) for v in values[cloud]] for key, values in (
                ("running_s", results.running), ("slave_s", results.slave),
                ("detected_s", results.detected), ("replaced_s", results.replaced))},
        }
    verbs = {cloud: {verb: round(median(values) * 1000, 2) for verb, values in timing.items()}
             for cloud, timing in results.verbs.items()}
    rss = {key: None if value is None else round(value, 1)
           for key, value in results.rss.items()}
    local_rss, clouds_rss = rss.get("local only"), rss.get("three clouds")
    return {"clouds": clouds, "verbs_ms": verbs, "rss_mb": rss,
            "rss_ratio": round(clouds_rss / local_rss, 3) if local_rss and clouds_rss else None,
            "total_s": round(results.total_s, 1)}


def render(figures: dict[str, Any]) -> None:
    table = Table(title="conpaassql on three clouds: local, OpenNebula (pyone), EC2 (Libcloud)")
    for column in ("measure", "local", "OpenNebula", "EC2"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    clouds = figures["clouds"]

    def row(label: str, key: str, unit: str = " s") -> None:
        table.add_row(label, *(f"{clouds[c][key]:.3f}{unit}" if clouds[c][key] is not None
                               else "n/a" for c in CLOUDS))

    row("add_nodes to RUNNING (median)", "running_s")
    row("  ratio to the local cloud", "running_ratio", "")
    row("add_nodes to replicating slave", "slave_s")
    row("  ratio to the local cloud", "slave_ratio", "")
    row("VM lost to node TERMINATED", "detected_s")
    row("VM lost to replacement replicating", "replaced_s")
    for key, label in (("running_s", "  runs to RUNNING"), ("slave_s", "  runs to slave")):
        table.add_row(label, *(runs_of(clouds[c]["runs"][key]) for c in CLOUDS))
    for verb in ("create", "list", "destroy"):
        table.add_row(f"driver {verb} (ms, in process)", "",
                      *(f"{figures['verbs_ms'][c][verb]:.1f}" for c in ("one", "aws")))
    rss = figures["rss_mb"]
    table.add_row("manager RSS idle: local only / three clouds",
                  f"{rss.get('local only')} MB", f"{rss.get('three clouds')} MB",
                  f"ratio {figures['rss_ratio']}")
    table.add_row("total benchmark time", f"{figures['total_s']:.0f} s", "", "")
    Console(width=130).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="slaves added per cloud")
    parser.add_argument("--lost-rounds", type=int, default=1, help="nodes lost per cloud")
    parser.add_argument("--verb-nodes", type=int, default=20,
                        help="nodes made per driver for the verbs' timings")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="limit of every single wait, in seconds (default %(default)s)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.lost_rounds, args.verb_nodes) < 1:
        parser.error("every count must be at least 1")
    started = time.perf_counter()
    results = Results()
    if not run_measured("cqb-clouds-", lambda root: measure(args, root, results)):
        return 1
    results.total_s = time.perf_counter() - started
    figures = summary(results)
    render(figures)
    print(json.dumps(figures, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
