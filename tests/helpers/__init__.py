"""Shared test helpers: products, tiny models, catalogs."""
