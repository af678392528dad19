"""The mysql role's buffer pool size from MemTotal (vars/main.yml), rendered
like Ansible renders it: rounded down to 128 MiB steps, at least one step, so
that a few MiB of MemTotal drift render the same config (and restart nothing)."""

from __future__ import annotations

import os

import jinja2
import pytest
import yaml

VARS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "mysql", "vars", "main.yml")


def buffer_pool_mb(memtotal_kb, percent=50):
    with open(VARS) as f:
        data = yaml.safe_load(f)
    expr = data["__mysql_buffer_pool_auto_mb"].strip()
    assert expr.startswith("{{") and expr.endswith("}}"), expr
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.compile_expression(expr[2:-2].strip())(
        __mysql_memtotal_kb=memtotal_kb, mysql_innodb_buffer_pool_percent=percent,
        __mysql_buffer_pool_step_mb=data["__mysql_buffer_pool_step_mb"])


@pytest.mark.parametrize("memtotal_kb,percent,expected", [
    (16 * 1024 * 1024, 50, 8192),          # 16 GiB, half: exactly 8 GiB
    (16 * 1024 * 1024 - 300 * 1024, 50, 7936),   # 300 MiB less: 8042 MiB, down to 62 steps
    (4 * 1024 * 1024, 75, 3072),
    (1024 * 1024, 10, 128),                # 102 MiB: at least one step
    (0, 50, 128),                          # no MemTotal read: the minimum
])
def test_buffer_pool_is_rounded_down_to_128_mib_steps(memtotal_kb, percent, expected):
    assert buffer_pool_mb(memtotal_kb, percent) == expected


def test_small_memtotal_drift_changes_nothing():
    base = 24 * 1024 * 1024 - 123_456      # 24 GiB host as the kernel reports it
    sizes = {buffer_pool_mb(base + drift * 1024) for drift in range(-40, 41, 4)}  # +-40 MiB
    assert sizes == {buffer_pool_mb(base)}, sizes
    assert buffer_pool_mb(base) % 128 == 0


def test_every_size_is_a_whole_step_and_never_above_the_share():
    for mb in range(100, 70000, 997):
        size = buffer_pool_mb(mb * 1024, 50)
        assert size % 128 == 0 and size >= 128
        share = max(128, mb // 2)
        assert size <= share and share - size < 128, (mb, size)
