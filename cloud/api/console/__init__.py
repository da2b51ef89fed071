"""The admin console at /console: pages for the people who run a shop's stores and
marketing, served by the orchestrator itself.

Each page is a small HTML shell (`pages`) and a script that reads and writes through the
JSON API with the member's session cookie and CSRF token. The front-end libraries are
vendored in static/vendor at the versions pinned in package.json (with their licences;
scripts/vendor_console_assets.py refreshes them): nothing is fetched from elsewhere at run
time.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.api.console.pages import HERE, STATIC_URL, console_errors, router


def install(app: FastAPI) -> None:
    """Serve the console's pages and files on `app`."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(StarletteHTTPException, console_errors)
