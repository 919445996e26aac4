"""Untrusted image work: validation, normalisation, result fitting and thumbnails, off the event loop."""
