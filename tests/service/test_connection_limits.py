"""ConnectionLimits: built from the DYNALAY_* settings, and fitted to the open-file limit."""

from __future__ import annotations

import dataclasses
import resource

from service.connection_guard import (
    FDS_PER_SLOT,
    RESERVED_FDS,
    ConnectionLimits,
    files_needed,
    fit_file_limit,
)
from service.core import Settings


def test_every_limit_comes_from_its_setting(monkeypatch):
    env = {"MAX_REQUEST_LINE_BYTES": "1000", "MAX_HEADER_LINE_BYTES": "2000",
           "MAX_HEAD_BYTES": "3000", "MAX_HEADERS": "7", "HEAD_TIMEOUT_S": "4.5",
           "KEEP_ALIVE_TIMEOUT_S": "2", "MAX_CONNECTIONS": "300",
           "MAX_CONNECTIONS_PER_CLIENT": "0", "RETRY_AFTER_S": "3"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(f"DYNALAY_{key}", value)
    limits = ConnectionLimits.from_settings(Settings())
    assert dataclasses.astuple(limits) == (1000, 2000, 3000, 7, 4.5, 2.0, 300, 0, 3)


def test_the_defaults_are_the_settings_defaults():
    assert ConnectionLimits.from_settings(Settings()) == ConnectionLimits()


def test_limits_that_fit_the_open_file_limit_are_kept():
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = ConnectionLimits(max_connections=max(1, (soft - RESERVED_FDS) // FDS_PER_SLOT))
    assert files_needed(limits) <= soft
    assert fit_file_limit(limits) == limits


def test_more_connections_than_files_allow_are_cut_to_what_fits():
    limits = fit_file_limit(ConnectionLimits(max_connections=10**9))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)  # raised as far as allowed
    assert limits.max_connections == (soft - RESERVED_FDS) // FDS_PER_SLOT
    assert files_needed(limits) <= soft
