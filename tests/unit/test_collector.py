"""The collector's settings while a process serves."""

import gc

import pytest

from ontheway import collector


def test_serving_freezes_and_raises_the_young_threshold_then_gives_both_back() -> None:
    before = gc.get_threshold()
    assert before != collector.THRESHOLDS and gc.get_freeze_count() == 0
    with collector.serving():
        assert gc.get_threshold() == collector.THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_serving_gives_them_back_when_the_process_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), collector.serving():
        raise RuntimeError("the server failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
