"""The web UI: chat, runs and traces, eval reports and the service-health dashboard.

``keel serve`` includes :func:`router` and the UI is at ``/ui``. The page is plain
HTML, CSS and ES modules under ``static/``, with uPlot vendored into ``static/vendor``
by ``scripts/build_ui.sh``: installing Keel needs no Node.js.

- :mod:`keel.operate.ui.api` — the router: the page, its files and the JSON it reads;
- :mod:`keel.operate.ui.chat` — runs and approvals streamed as Server-Sent Events;
- :mod:`keel.operate.ui.metrics` — dashboard numbers aggregated from ``model_calls``.
"""

from keel.operate.ui.api import router

__all__ = ["router"]
