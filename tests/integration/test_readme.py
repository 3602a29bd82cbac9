"""The README's examples, run as written against a real manager, so that the README
cannot drift from the code.

Every ``$ ...`` line of the fenced blocks in "Using the service" runs in a shell, a
block per fresh service, with only what ties a line to one machine put right: the
manager's address and port (the test's manager has its own), ``var/`` (its state
directory), the 127.0.0.N addresses of the nodes and of the router ``make run``
starts (its own 127.0.M.N range, with a router on .2 as there) and a password
prompt (``-p``), answered from ``$CONPAASSQL_PASSWORD`` as the client itself does.
After a line that adds nodes the test waits, as a reader would, for them to be
up. A line passes when it exits 0 and, if it prints a JSON-RPC reply, the reply
carries no error.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.router import Router
from tests.integration.harness import REPO, Manager

pytestmark = pytest.mark.integration

README = REPO / "README.md"
SECTION = "## Using the service"
PASSWORD = "Readme-example-pw-1"
DUMP = (b"CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, name VARCHAR(40));\n"
        b"INSERT INTO items VALUES (1, 'first'), (2, 'second');\n")


def example_blocks(text: str) -> list[list[str]]:
    """The command lines of each fenced block of the README's usage section."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, flags=re.S)
    found = []
    for block in blocks:
        lines: list[str] = []
        for line in block.splitlines():
            if lines and lines[-1].endswith("\\"):
                lines[-1] += "\n" + line
            elif line.startswith("$ "):
                lines.append(line[2:])
        if lines:
            found.append(lines)
    return found


def localised(line: str, manager: Manager) -> str:
    """The line for this test's manager instead of ``make run``'s."""
    line = line.replace("127.0.0.1 50000", f"127.0.0.1 {manager.port}")
    line = line.replace("127.0.0.1:50000", f"127.0.0.1:{manager.port}")
    line = re.sub(r"\b127\.0\.0\.(\d+)\b", lambda m: f"127.0.{manager.subnet}.{m.group(1)}"
                  if m.group(1) != "1" else m.group(0), line)
    line = re.sub(r"(?<![\w/])var/", f"{manager.state_dir}/", line)
    line = re.sub(r"(?<![\w/])scripts/", f"{REPO}/scripts/", line)
    return re.sub(r" -p( |$)", r' -p"$CONPAASSQL_PASSWORD"\1', line)


def replies(output: str) -> Iterator[dict[str, object]]:
    """The JSON-RPC replies printed by a line (curl prints them whole)."""
    text = output.strip()
    if text.startswith("{"):
        with_id = json.loads(text)
        if isinstance(with_id, dict) and "error" in with_id and "result" in with_id:
            yield with_id


def run_block(lines: list[str], manager: Manager, workdir: Path) -> None:
    env = {**os.environ, "C": f"{sys.executable} -m conpaassql.client",
           "CONPAASSQL_PASSWORD": PASSWORD}
    env.pop("CONPAASSQL_TOKEN", None)
    for line in lines:
        command = localised(line, manager)
        done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env,
                              input="SHOW TABLES;\n", capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, f"{line!r} failed: {done.stderr or done.stdout}"
        for reply in replies(done.stdout):
            assert reply["error"] is None, f"{line!r} answered {reply['error']!r}"
        if "add_node" in command:
            wait_for_nodes(manager)


def wait_for_nodes(manager: Manager) -> None:
    """What a reader does after adding nodes: wait until they are up and replicating."""
    live = [n for n in manager.nodes() if n["state"] not in ("TERMINATING", "TERMINATED")]
    manager.wait_topology(len(live))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "shop.sql").write_bytes(DUMP)
    (tmp_path / "shop.sql.gz").write_bytes(gzip.compress(DUMP))
    return tmp_path


BLOCKS = example_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3
    assert any("set_up_replica_master" in line for line in BLOCKS[0])


@pytest.mark.parametrize("block", range(len(BLOCKS)), ids=lambda i: f"block{i + 1}")
def test_readme_block_runs_as_written(block: int, template_cache: Path,
                                      workdir: Path) -> None:
    manager = Manager(template_cache).start()
    # As make run does: a router on the range's .2, its writer :3306, its readers :3307.
    router = Router(manager, manager.subnet).start()
    try:
        run_block(BLOCKS[block], manager, workdir)
    finally:
        router.stop()
        manager.close()
