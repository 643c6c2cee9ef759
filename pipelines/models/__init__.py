"""Model location, the known-model registry and tiny random models for tests (no weights downloaded)."""
