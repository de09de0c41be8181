"""Writes of the governance app, one module per feature. Each one records its own audit event (`audit`), so no
caller can forget it."""
