"""Segmentation: a subject's mask from a photo (classic cutout and person, routing, prompts, grounded-sam)."""
