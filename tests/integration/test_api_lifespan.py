"""The API's start-up and shutdown, in this process."""

import gc

from ontheway.api.app import GC_THRESHOLDS, create_app
from ontheway.settings import Settings


async def test_the_app_runs_with_its_collector_settings_and_gives_them_back(
    settings: Settings,
) -> None:
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS and gc.get_freeze_count() == 0
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what start-up built is out of the full passes
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
