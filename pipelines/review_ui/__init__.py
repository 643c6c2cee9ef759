"""The review UI: the review page (exported or live), the live page and its server."""
