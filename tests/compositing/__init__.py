"""Tests of compositing."""
