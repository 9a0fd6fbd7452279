"""The dashboard and the tracking page in a real browser (Debian's headless Chromium driven by
Playwright) against a real server: roads drawn, drivers moving, orders, a customer following
their order; no console errors. Screenshots are kept in tests/artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.orders.ids import new_id
from ontheway.regions import Catalog
from tests.e2e.conftest import Server
from tests.e2e.test_dashboard_api import (  # noqa: F401 (fixtures)
    UNION_SQUARE,
    crew,
    go_offline,
    go_online,
    ops_token,
    place_and_assign,
    report,
    sf_map,
)

CHROMIUM = "/usr/bin/chromium"
# What the machine's notes say Chromium needs here (root, no GPU, no network but loopback).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; a clear failure (not a skip) when it is not installed."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: run `make system` (scripts/setup-system.sh installs "
            "Debian's chromium) or `apt-get install -y chromium`"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


class Console:
    """Every console message and uncaught error of a page."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))

    def _message(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.messages.append(f"{message.type}: {message.text}")


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[tuple[Page, Console]]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    yield opened, Console(opened)
    await context.close()


@pytest.fixture(scope="module")
async def downtown(conns: Connections, catalog: Catalog) -> dict[str, Any]:
    """A restaurant at Union Square (inside the downtown map), one dish in stock."""
    restaurant_id, item_id = new_id("rest", "sf"), new_id("item", "sf")
    lat, lng = UNION_SQUARE
    async with conns.shard_connection(catalog.shard_for("sf")) as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO restaurants (restaurant_id, name, region, location, delivery_radius_m,"
            " prep_time_mean_s, prep_time_sd_s) VALUES (%s, 'Dashboard Diner', 'sf',"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, 3000, 600, 60)",
            (restaurant_id, lng, lat),
        )
        await conn.execute(
            "INSERT INTO menu_items (item_id, restaurant_id, name, price)"
            " VALUES (%s, %s, 'Cioppino', 18.50)",
            (item_id, restaurant_id),
        )
        await conn.execute(
            "INSERT INTO inventory (item_id, quantity) VALUES (%s, 1000)", (item_id,)
        )
    return {"restaurant_id": restaurant_id, "lat": lat, "lng": lng, "items": [{"item_id": item_id}]}


def marker(driver: str) -> str:
    return f'circle[data-driver-id="{driver}"]'


async def wait_for_marker(page: Page, driver: str, lat: float, *statuses: str) -> None:
    """Until the driver's dot is at ``lat``, drawn in one of ``statuses`` (the page gets a
    snapshot a second)."""
    await page.wait_for_function(
        """([sel, lat, statuses]) => {
            const m = document.querySelector(sel);
            return m && Math.abs(Number(m.dataset.lat) - lat) < 1e-5
                && statuses.includes(m.dataset.status) && m.classList.contains(m.dataset.status)
                && m.style.transform.startsWith("translate(");
        }""",
        arg=[marker(driver), lat, list(statuses)],
    )


async def painted_pixels(page: Page) -> int:
    """How many pixels of the road canvas are painted."""
    count: int = await page.evaluate(
        """() => {
            const c = document.getElementById("roads");
            const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
            return n;
        }"""
    )
    return count


async def test_the_dashboard_draws_the_roads_and_moves_the_drivers(
    sf_map: Server,  # noqa: F811
    crew: dict[str, Any],  # noqa: F811
    downtown: dict[str, Any],
    page: tuple[Page, Console],
) -> None:
    tab, console = page
    online, parked, driver = (d["driver_id"] for d in crew["drivers"][:3])
    # Offline before it ever reports: no dispatcher (of tests running beside these) takes it.
    await go_offline(sf_map, parked)
    await report(sf_map, parked, *UNION_SQUARE)
    await report(sf_map, online, UNION_SQUARE[0] + 0.004, UNION_SQUARE[1] + 0.004)
    await tab.goto(f"{sf_map.base_url}/#token={ops_token(sf_map, ['sf'])}&region=sf")
    await tab.wait_for_function("() => window.__ontheway.roads && window.__ontheway.snapshots > 0")
    roads = await tab.evaluate("() => window.__ontheway.roads")
    assert roads["segments"] > 500
    assert await painted_pixels(tab) > 5000, "the roads were not drawn"
    assert await tab.locator("#region").input_value() == "sf"
    await wait_for_marker(tab, parked, UNION_SQUARE[0], "offline")
    # available, or busy when a dispatcher of another test has offered it an order
    await wait_for_marker(tab, online, UNION_SQUARE[0] + 0.004, "available", "busy")
    before = await tab.locator(marker(parked)).evaluate("m => m.style.transform")

    await report(sf_map, parked, UNION_SQUARE[0] + 0.006, UNION_SQUARE[1] - 0.002)
    await wait_for_marker(tab, parked, UNION_SQUARE[0] + 0.006, "offline")
    assert await tab.locator(marker(parked)).evaluate("m => m.style.transform") != before
    await go_online(sf_map, parked)
    await wait_for_marker(tab, parked, UNION_SQUARE[0] + 0.006, "available", "busy")

    await report(sf_map, driver, *UNION_SQUARE)
    order_id = await place_and_assign(sf_map, downtown, crew["customers"][0], driver)
    await tab.wait_for_selector(f'g.order[data-order-id="{order_id}"] line', state="attached")
    available = await tab.locator("#kpi-drivers_available").text_content()
    assert available is not None and int(available) >= 1
    assert await tab.locator("#orders-today dd").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    await tab.screenshot(path=ARTIFACTS / "dashboard.png")
    assert console.messages == []


async def test_the_tracking_page_follows_the_driver_and_the_status(
    sf_map: Server,  # noqa: F811
    crew: dict[str, Any],  # noqa: F811
    downtown: dict[str, Any],
    page: tuple[Page, Console],
) -> None:
    tab, console = page
    driver, customer = crew["drivers"][3]["driver_id"], crew["customers"][1]
    await report(sf_map, driver, UNION_SQUARE[0] - 0.003, UNION_SQUARE[1])
    order_id = await place_and_assign(sf_map, downtown, customer, driver)
    token = sf_map.token(Role.CUSTOMER, customer)
    await tab.goto(f"{sf_map.base_url}/track/{order_id}#token={token}")
    await tab.wait_for_function("() => window.__ontheway.route && window.__ontheway.messages > 0")
    route = await tab.evaluate("() => window.__ontheway.route")
    assert route["kind"] == "road" and len(route["points"]) > 2
    assert await tab.locator("#status").get_attribute("data-status") == "driver_assigned"
    assert await tab.locator("#eta").get_attribute("data-eta")

    await report(sf_map, driver, UNION_SQUARE[0] - 0.001, UNION_SQUARE[1])
    await tab.wait_for_function(
        "lat => Math.abs(Number(document.getElementById('driver').dataset.lat) - lat) < 1e-5",
        arg=UNION_SQUARE[0] - 0.001,
    )
    assert await tab.locator("#driver").get_attribute("visibility") == "visible"
    async with httpx.AsyncClient(base_url=sf_map.base_url, timeout=10) as http:
        resp = await http.post(
            f"/api/orders/{order_id}/arrived", headers=sf_map.auth(Role.DRIVER, driver)
        )
        assert resp.status_code == 200, resp.text
    await tab.wait_for_selector('#status[data-status="driver_at_restaurant"]')
    assert "status: driver at restaurant" in (await tab.locator("#log").text_content() or "")
    # The dot glides to each new position: let it arrive before the picture is taken.
    await tab.wait_for_function(
        "() => document.getElementById('driver').getAnimations().length == 0"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    await tab.screenshot(path=ARTIFACTS / "track.png")
    assert console.messages == []
