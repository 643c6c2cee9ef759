"""Engines: named bundles of stage backends, and the one registry that picks them."""
