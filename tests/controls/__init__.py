"""Tests of controls."""
