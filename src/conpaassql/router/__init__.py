"""``conpaassql router``: one address for writes and one for reads, in front of the
service's nodes.

HAProxy (a child process, TCP mode, so MySQL's TLS passes through untouched)
listens on the two addresses; the node whose agent's ``GET /primary`` answers 200
takes the writer's connections, the nodes whose ``GET /replica?max_lag=S`` does
share the readers' (the master as their fallback). The router learns the nodes
from the manager's ``list_nodes`` and fills and frees HAProxy's server slots over
its runtime API, never restarting it; while the manager is away it keeps routing
with what it last knew. It imports only ``rpc`` and ``errors`` of ours.
"""
