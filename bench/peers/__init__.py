"""Peers nudge is measured against in bench.pipeline: the same minimal decision
(bench.peers.decision) in a minimal Quix Streams application and in a minimal
Faust agent, each run as its own process like bench/echo.py."""
