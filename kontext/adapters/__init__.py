"""Adapters: the concrete outside world behind the ports (APIMart, Discord, storage, image hosts,
HTTP downloads, image processing, the web server). Only :mod:`kontext.adapters.discord` imports discord."""
