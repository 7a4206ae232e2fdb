"""Placeholder: built in its own issue."""

from __future__ import annotations
