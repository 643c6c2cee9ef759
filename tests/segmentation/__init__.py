"""Tests of segmentation."""
