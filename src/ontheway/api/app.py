"""The FastAPI application: built from the settings, pools opened and closed by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

from fastapi import FastAPI

import ontheway
from ontheway import collector, tasks
from ontheway.api.deps import AppState
from ontheway.api.errors import install_error_handlers
from ontheway.api.routes import analytics as analytics_routes
from ontheway.api.routes import dashboard as dashboard_routes
from ontheway.api.routes import flags as flag_routes
from ontheway.api.routes import fleet as fleet_routes
from ontheway.api.routes import notifications as notification_routes
from ontheway.api.routes import offers as offer_routes
from ontheway.api.routes import orders, restaurants, roads, system
from ontheway.api.routes import ratings as rating_routes
from ontheway.api.routes import tracking as tracking_routes
from ontheway.connections import Connections
from ontheway.dispatch.reconcile import build_reconciler
from ontheway.fleet.recorder import OrderEventsRecorder
from ontheway.fleet.service import Fleet
from ontheway.regions import load_catalog
from ontheway.schema.admin import prune_every
from ontheway.schema.partitions import keep_partitions_ahead
from ontheway.settings import Settings
from ontheway.tasks import tasks_logged_on_signal

log = logging.getLogger(__name__)


async def _step(name: str, closing: Awaitable[None], limit_s: float = 15.0) -> None:
    """One step of the shutdown, logged by name if it takes longer than ``limit_s`` (it is
    then left behind: the process is ending)."""
    try:
        await asyncio.wait_for(closing, limit_s)
    except TimeoutError:
        log.error("shutdown: closing the %s took over %.0f s; left behind", name, limit_s)


def create_app(settings: Settings) -> FastAPI:
    """Build the API; configuration errors surface here, before the server listens."""
    jwt_key = settings.jwt_key()
    catalog = load_catalog(settings.region_catalog)
    for shard in catalog.shards():
        settings.dsn_for(shard)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conns = await Connections.open(settings, shards=catalog.shards())
        app.state.ontheway = AppState(settings, jwt_key, catalog, conns)
        upkeep = [
            asyncio.create_task(keep_partitions_ahead(conns.shards), name="partitions"),
            asyncio.create_task(prune_every(settings, catalog.shards()), name="pruning"),
        ]
        app.state.fleet = Fleet.open(
            conns.require_redis(),
            catalog,
            settings,
            recorder=OrderEventsRecorder(app.state.ontheway.orders),
            conns=conns,
        )
        app.state.offers = offer_routes.open_offers(app.state.ontheway, app.state.fleet)
        app.state.fleet.start_task(
            "offer-sweeper",
            app.state.offers.run_sweeper(
                [r.region for r in catalog], settings.fleet_monitor_interval_s
            ),
        )
        app.state.fleet.start_task(
            "dispatch-reconcile", build_reconciler(conns, catalog, settings).run()
        )
        # What start-up built lives as long as the app: out of the collector's full passes,
        # which otherwise walk it again and again while fixes stream in; and the young
        # generation collected less often (see collector.py).
        try:
            with collector.serving(), tasks_logged_on_signal():
                yield
        finally:
            follow_up = getattr(app.state, "traffic_follow_up", None)
            if follow_up is not None:
                await _step("traffic follow-up", follow_up.aclose())
            await _step("fleet", app.state.fleet.aclose())
            # Each to its end, or left behind (logged) if it hangs (a gather cancelled ends
            # at the first child cancelled, and left the other one running after the pools
            # closed).
            await tasks.stop(upkeep)
            await _step("connections", conns.close())

    app = FastAPI(
        title="ontheway",
        version=ontheway.__version__,
        lifespan=lifespan,
        description="Food-delivery dispatch: orders, fleet, roads, dispatch.",
    )
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(orders.router)
    app.include_router(restaurants.router)
    app.include_router(fleet_routes.router)
    app.include_router(offer_routes.router)
    app.include_router(tracking_routes.router)
    app.include_router(roads.router)
    app.include_router(flag_routes.router)
    app.include_router(analytics_routes.router)
    app.include_router(notification_routes.router)
    app.include_router(rating_routes.router)
    app.include_router(dashboard_routes.router)
    dashboard_routes.mount_static(app)
    return app


def app_from_environment() -> FastAPI:
    """The API built from the environment: the factory each of several uvicorn workers runs."""
    from ontheway.settings import load_settings

    return create_app(load_settings())
