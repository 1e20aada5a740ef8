"""Rebound peers: a WebRTC bouncing-ball sender (server) and tracker (client)."""

__version__ = "0.1.0"
