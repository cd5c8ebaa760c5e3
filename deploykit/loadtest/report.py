"""Moved to :mod:`deploykit.report.loadtest` (one home for every report); kept so existing imports work."""

from deploykit.report.loadtest import *  # noqa: F403
from deploykit.report.loadtest import SCHEMA_VERSION, build, check_outputs, to_markdown, write  # noqa: F401
