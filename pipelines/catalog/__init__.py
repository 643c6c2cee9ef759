"""The catalog: store (locks, staging, commit), render, verify, review decisions, reports, publish."""
