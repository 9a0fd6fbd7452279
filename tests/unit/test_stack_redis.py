"""The local Redis's allocator check, before anything starts."""

import os
from pathlib import Path

import pytest

from ontheway.errors import MissingPrerequisite
from ontheway.stack import redis as redis_stack
from ontheway.stack.redis import RedisStack, allocator_of


def test_without_jemalloc_up_stops_with_one_message_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_stack, "jemalloc_library", lambda: None)
    root = tmp_path / "redis"
    with pytest.raises(MissingPrerequisite) as caught:
        RedisStack(root, 1, "jemalloc").up()  # port 1: never opened, never listened on
    assert caught.value.message == (
        "jemalloc is not installed: run `make setup`, or: apt-get install libjemalloc2 (or set "
        "ONTHEWAY_STACK_REDIS_ALLOCATOR=libc to run Redis on the C library's malloc)"
    )
    assert not root.exists()


def test_the_allocator_of_a_process_is_read_from_its_mapped_libraries() -> None:
    # The tests' Python runs on the C library's malloc: nothing preloads jemalloc into it.
    assert "jemalloc" not in os.environ.get("LD_PRELOAD", "")
    assert allocator_of(os.getpid()) == "libc"
    assert allocator_of(1 << 30) == "unknown"  # no such process
