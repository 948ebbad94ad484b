"""Connectors: an admin-managed registry of MCP servers with encrypted credentials
(docs/connectors.md). Specs name them as ``mcp: [{connector: NAME}]``."""

from keel.connectors.registry import Connector, ConnectorError, Connectors, Credentials
from keel.connectors.secretbox import SecretBox

__all__ = ["Connector", "ConnectorError", "Connectors", "Credentials", "SecretBox"]
