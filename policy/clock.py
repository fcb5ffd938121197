"""Spans of time in seconds, the unit of every epoch-float time in state,
policy and models: defined once, so a day is the same day everywhere."""

from __future__ import annotations

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
