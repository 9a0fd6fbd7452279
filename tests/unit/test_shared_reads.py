"""SharedReads: one read per key at a time, shared while young; failures are not kept."""

import asyncio

import pytest

from ontheway.shared_reads import SharedReads


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def read(self) -> int:
        self.calls += 1
        await asyncio.sleep(0.01)
        return self.calls


async def test_concurrent_callers_share_one_read_per_key() -> None:
    reads, counter = SharedReads[str, int](60.0), Counter()
    got = await asyncio.gather(*(reads.get("a", counter.read) for _ in range(5)))
    assert got == [1] * 5 and counter.calls == 1
    assert await reads.get("b", counter.read) == 2  # another key reads on its own
    assert await reads.get("a", counter.read) == 1  # still young


async def test_a_read_older_than_the_age_is_made_again() -> None:
    reads, counter = SharedReads[str, int](0.05), Counter()
    assert await reads.get("a", counter.read) == 1
    await asyncio.sleep(0.06)
    assert await reads.get("a", counter.read) == 2


async def test_a_failed_read_is_not_kept() -> None:
    reads, counter = SharedReads[str, int](60.0), Counter()

    async def failing() -> int:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        await reads.get("a", failing)
    assert await reads.get("a", counter.read) == 1


async def test_a_cancelled_caller_leaves_the_read_to_the_others() -> None:
    reads, counter = SharedReads[str, int](60.0), Counter()
    first = asyncio.ensure_future(reads.get("a", counter.read))
    second = asyncio.ensure_future(reads.get("a", counter.read))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == 1 and counter.calls == 1
