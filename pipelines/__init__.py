"""Vitrine's library: images and masks in, images and masks out. No Prefect imports here."""

__version__ = "0.1.0"
