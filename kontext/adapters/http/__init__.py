"""Outbound HTTP: capped, SSRF-safe downloads."""
