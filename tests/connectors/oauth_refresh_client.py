"""One process using an OAuth connector, as a `keel serve` or a worker does, for the refresh
race test (tests/connectors/test_connector_refresh_lock.py).

``python oauth_refresh_client.py NAME`` (the store from KEEL_HOME / KEEL_STORE_URL) lists the
connector's tools through Keel's run-time OAuth provider (stored tokens, refreshed when they
expired) and prints one JSON line: how many tools, a hash of the access token it ended with
(never the token), and whether its refresh was refused. Keel's OAuth log goes to stderr, so the
test sees when this process waits for another one's refresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys

from keel.connectors import Connectors
from keel.connectors.oauth import _list, provider
from keel.store import open_store

logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
logging.getLogger("keel.connectors.oauth").setLevel(logging.INFO)

store = open_store()
try:
    registry = Connectors(store)
    connector = registry.get(sys.argv[1], secrets=True)
    auth = provider(registry, connector)
    tools = asyncio.run(_list(connector, auth))
    token = auth.context.current_tokens.access_token
    print(json.dumps({"tools": tools, "token": hashlib.sha256(token.encode()).hexdigest()[:16],
                      "refused": auth.refused_refresh}), flush=True)
finally:
    store.close()
