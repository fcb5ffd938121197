"""Spans of time in seconds, the unit of every epoch-float time in state,
policy and models: defined once, so a day is the same day everywhere."""

from __future__ import annotations

MINUTE = 60.0
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
