"""Operate: traces, the service-health dashboard, budgets and the HTTP server.

Not built yet: see the serve issue. This package is where it lands.
"""
