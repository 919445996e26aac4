"""The bot's aiohttp web server: health, metrics and locally hosted files."""
