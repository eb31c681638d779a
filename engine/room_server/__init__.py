"""The built-in room server `reactdiff-room` (aiohttp) and its web page (static/)."""
