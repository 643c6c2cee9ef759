"""Tests of review_ui."""
