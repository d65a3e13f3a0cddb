"""Tests of srigl_ref.interchange (docs/interchange.md)."""
