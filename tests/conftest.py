"""Shared test fixtures."""

from __future__ import annotations

import os

# Quieter TensorFlow in test logs; set before any test imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
