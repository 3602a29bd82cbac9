"""The agent's ``verify_from_store``: a backup restored on a scratch server of this
node and its tables checked, the node's own server and data left alone.

It shares ``StoreApi``'s one-at-a-time rule: no backup, restore or verification
runs beside another on a node.
"""

from __future__ import annotations

import logging
from typing import Any

from conpaassql.agent.store_api import StoreApi, store_of
from conpaassql.errors import ConpaasSQLError
from conpaassql.mysql.scratch_server import verify_chain
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.backup import VerifiedFromStore, VerifyFromStoreRequest
from conpaassql.rpc.registry import CallContext, Registry

log = logging.getLogger(__name__)


class VerifyApi:
    def __init__(self, store_api: StoreApi) -> None:
        self.store_api = store_api
        self.settings = store_api.settings

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.VERIFY_FROM_STORE, self.verify_from_store)

    async def verify_from_store(self, params: VerifyFromStoreRequest,
                                ctx: CallContext) -> dict[str, Any]:
        self.store_api._claim("a backup verification")
        node = self.settings.node_id
        store = None
        try:
            store = store_of(params.store)
            log.info("node %d: verifying %s from %s", node, ", ".join(params.objects),
                     store.url)
            verified = await verify_chain(self.settings.paths, store, params.objects,
                                          run_as=self.settings.server_settings().run_as)
        except ConpaasSQLError as exc:
            log.error("node %d: verification failed: %s", node, exc)
            raise
        finally:
            self.store_api._busy = None
            if store is not None:
                await store.close()
        log.info("node %d: backup verified: %d table(s) sound in %.2f s", node,
                 verified.tables, verified.seconds)
        return VerifiedFromStore(tables=verified.tables, gtid_position=verified.gtid_position,
                                 seconds=round(verified.seconds, 3)).wire()
