"""Kontext: the core of the Discord image-editing bot (everything that is not Discord glue)."""

__version__ = "0.1.0"
