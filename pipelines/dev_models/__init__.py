"""Random models for tests and benchmarks: tiny ones, and real-architecture ones from the published configs."""
