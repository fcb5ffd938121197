"""The event contract: typed records for everything nudge reads and writes."""
