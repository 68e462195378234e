"""Durations in configuration and on the command line: '90d', '12h', '30m', '45s', '2w'.

A leaf module, so the configuration and the protocol settings it contains both use it
without importing each other.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> dt.timedelta:
    """'90d', '12h', '30m', '45s', '2w' or a number of seconds."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration like '90d', '12h' or '3600s' is expected")
    if isinstance(value, int | float):
        return dt.timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(f"{value!r} is not a duration like '90d', '12h' or '3600s'")


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]
