"""Shared test set-up. Area fixtures live beside their tests (tests/*_fixtures.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ is not a package: make its helper modules importable by name.
sys.path.insert(0, str(Path(__file__).parent))
