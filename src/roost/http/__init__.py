"""The aiohttp application: one middleware for identity, authorization and errors; one routes module per area."""
