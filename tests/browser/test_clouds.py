"""Nodes on another cloud, from the front-end: the add form offers every cloud the
manager has; a node asked of the second cloud (a stand-in OpenNebula whose VMs
nothing boots, so they stay PENDING) shows its cloud in the table; that cloud's
refusal is shown in its own words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from testbed.standins.opennebula import SEED_SECTION, SEED_TEMPLATE, OpenNebulaStandIn
from tests.browser.harness import BrowserManager, Gui, run_manager

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def one() -> Iterator[OpenNebulaStandIn]:
    standin = OpenNebulaStandIn(user="oneadmin", password="one-Pa55")
    try:
        yield standin
    finally:
        standin.close()


@pytest.fixture(scope="module")
def manager(template_cache: Path, one: OpenNebulaStandIn,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserManager]:
    template = tmp_path_factory.mktemp("one") / "agent.template"
    template.write_text(SEED_TEMPLATE)
    section = "".join(f"{key} = {value}\n" for key, value in SEED_SECTION.items())
    yield from run_manager(template_cache, (
        "require_token = true\n"
        f"[iaas_one]\nDRIVER = OPENNEBULA_XMLRPC\nOPENNEBULA_URL = {one.url}\n"
        "OPENNEBULA_USER = oneadmin\nOPENNEBULA_PASSWORD = one-Pa55\n"
        f"[onevm_agent_template]\nFILENAME = {template}\n{section}"))


def test_a_node_on_another_cloud(manager: BrowserManager, one: OpenNebulaStandIn,
                                 gui: Gui, page: Page) -> None:
    page.goto(gui.url + "/nodes")
    clouds = page.get_by_test_id("add-cloud")
    expect(clouds.locator("option")).to_have_text(["default", "one"])
    clouds.select_option("one")
    page.get_by_test_id("add-count").fill("1")
    page.get_by_test_id("add-nodes").click()
    expect(page.locator("[data-testid=flash-ok] span").first).to_have_text("Node 1 requested")
    row = page.locator('tr[data-node="1"]')
    expect(row.locator('td[data-label="cloud"]')).to_have_text("one")
    expect(row).to_have_attribute("data-state", "PENDING")
    assert [vm.template["CONPAASSQL_NODE"] for vm in one.vms.values()] == ["1"]
    assert manager.node(1)["cloud"] == "one"

    one.max_vms = 1  # the cloud's quota is used up: its refusal, word for word
    page.goto(gui.url + "/nodes")
    page.get_by_test_id("add-cloud").select_option("one")
    page.get_by_test_id("add-count").fill("1")
    page.get_by_test_id("add-nodes").click()
    expect(page.locator("[data-testid=flash-error] span").first).to_have_text(
        "Cloud error: OpenNebula refused to create a VM: [one.vm.allocate] User [0] : "
        "limit of 1 reached for VMS quota in default group.")
    assert len(one.vms) == 1
