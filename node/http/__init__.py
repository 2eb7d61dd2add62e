"""HTTP: the aiohttp app factory and one module per route group."""
