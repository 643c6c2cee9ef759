"""Tests of tryon."""
