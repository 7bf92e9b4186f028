"""End-to-end harness: real yggdrasil routers in network namespaces, real ygbridge under twistd.

A :class:`Lab` owns everything it starts (namespaces, veth pairs, processes) and tears it all
down in :meth:`Lab.close`, which is also registered with :mod:`atexit`. Every wait is bounded and
polls a real condition; nothing sleeps blindly. Traffic only ever flows between namespaces the lab
created (10.231.N.0/24 on veth pairs, 200::/7 on each router's TUN) and on their own loopback.

Typical use::

    lab = Lab(tmp_path)
    a, b = lab.add_node("a"), lab.add_node("b")
    lab.connect(a, b)                 # b listens on its veth address, a peers with it
    lab.start_routers()               # waits for admin sockets and for the peering to be up
    a.bridge.setup(users={"alice": "pw"})
    a.bridge.start()                  # waits for {"event": "ygbridge.ready"}
    with a.bridge.smtp(login=("alice", "pw")) as smtp: ...
    lab.close()

The modules, each importable on its own (everything public is also importable from here):

- :mod:`.errors`: HarnessError and its kinds;
- :mod:`.waiting`: ``wait_until`` and ``holds_for``, the bounded waits;
- :mod:`.processes`: commands and daemons on the host (run, stop, find the product's scripts);
- :mod:`.namespaces`: ``Namespace`` and the privileges it needs;
- :mod:`.routers`: yggdrasil binaries by version and ``Router``, one daemon in a namespace;
- :mod:`.bridges`: ``Bridge`` (ygbridge's config, CLI and twistd service) and ``BridgeRun``;
- :mod:`.clients`: SMTP and IMAP clients whose sockets live in a namespace;
- :mod:`.labs`: ``Node``, ``Lab`` and ``Pair`` (two started nodes), the cleanup at exit, and the
  sweep of namespaces that dead runs left behind;
- :mod:`.measures`: what a process costs (peak RSS, CPU time) and the figures tests print.
"""

from __future__ import annotations

from .bridges import (
    IMAP_PORT,
    MESH_PORT,
    READY_TIMEOUT,
    SUBMISSION_PORT,
    Bridge,
    BridgeRun,
    meshname_domain,
)
from .clients import CLIENT_TIMEOUT, imap_client, insecure_tls, smtp_client
from .errors import BridgeStartError, HarnessError, ProcessExited
from .labs import Lab, Node, Pair, labs_active_since, remove_stale_namespaces
from .measures import Cost, cpu_seconds, figure, status_bytes
from .namespaces import Namespace, check_privileges
from .processes import COMMAND_TIMEOUT, STOP_TIMEOUT, find_command, run_command, stop_process, tail
from .routers import ROUTER_PORT, YGGDRASIL_VERSIONS, Router, binary_version, yggdrasil_binary
from .waiting import holds_for, wait_until

__all__ = [
    "CLIENT_TIMEOUT",
    "COMMAND_TIMEOUT",
    "IMAP_PORT",
    "MESH_PORT",
    "READY_TIMEOUT",
    "ROUTER_PORT",
    "STOP_TIMEOUT",
    "SUBMISSION_PORT",
    "YGGDRASIL_VERSIONS",
    "Bridge",
    "BridgeRun",
    "Cost",
    "BridgeStartError",
    "HarnessError",
    "Lab",
    "Namespace",
    "Node",
    "Pair",
    "ProcessExited",
    "Router",
    "binary_version",
    "check_privileges",
    "cpu_seconds",
    "figure",
    "find_command",
    "holds_for",
    "imap_client",
    "insecure_tls",
    "labs_active_since",
    "meshname_domain",
    "remove_stale_namespaces",
    "run_command",
    "smtp_client",
    "status_bytes",
    "stop_process",
    "tail",
    "wait_until",
    "yggdrasil_binary",
]
