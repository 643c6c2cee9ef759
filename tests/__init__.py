"""Vitrine's tests, laid out like pipelines/ and flows/."""
