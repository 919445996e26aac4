"""Persistence adapters behind the store port."""
