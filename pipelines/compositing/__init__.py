"""Compositing: placement, alpha compositing, seam bands and inpainting, backgrounds, the preservation check."""
