"""The console's pages: an HTML shell per page, served to signed-in members whose role
may see it; everything on a page is read and written through the JSON API with the
member's session (the page adds no second way to change anything).

A page the member's role may not see is refused with a page saying why (403), the way
the API refuses the same member; a member who is not signed in (or whose session ended)
is sent to the sign-in page and brought back after.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.api.access import (
    Authenticated,
    Caller,
    SignedIn,
    TenantCaller,
)
from cloud.api.deps import SessionDep, SettingsDep
from cloud.auth import members
from cloud.auth.permissions import MEMBER_GRANTS, MemberRole, Permission
from cloud.settings import Settings

HERE = Path(__file__).parent
STATIC_URL = "/console/static"
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter(prefix="/console", include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Page:
    slug: str
    title: str
    #: What the member's role needs to open it.
    needs: Permission
    #: The nav group it is listed under.
    group: str
    #: Where else the page may show images from (the content policy's img-src).
    images_from: tuple[str, ...] = ()


#: Every page of a tenant, in the order the navigation lists them.
PAGES = (
    Page("live", "Live presence", Permission.ANALYTICS_READ, "Watch"),
    Page("analytics", "Analytics", Permission.ANALYTICS_READ, "Watch"),
    Page("stores", "Stores & gateways", Permission.CONFIG_READ, "Set up"),
    Page("geofences", "Geofences", Permission.CONFIG_READ, "Set up"),
    Page("settings", "Shop settings", Permission.CONFIG_READ, "Set up"),
    Page("offers", "Offers & coupons", Permission.CONFIG_READ, "Market"),
    Page("scenarios", "Scenarios", Permission.CONFIG_READ, "Market"),
    # Previews show the pictures templates name (the shop's CDN, wherever it is).
    Page("templates", "Templates", Permission.CONFIG_READ, "Market", images_from=("https:",)),
    Page("dead-letters", "Dead letters", Permission.CONFIG_READ, "Administer"),
    Page("keys", "API keys", Permission.KEYS_MANAGE, "Administer"),
    Page("members", "Members", Permission.MEMBERS_MANAGE, "Administer"),
    Page("audit", "Audit log", Permission.AUDIT_READ, "Administer"),
)
PAGE_BY_SLUG = {page.slug: page for page in PAGES}
#: Where a member lands in a tenant: the first page their role may open.
LANDING_ORDER = ("live", "stores", "offers")


def _security_headers(response: Response, *, nonce: str, settings: Settings,
                      images_from: tuple[str, ...] = ()) -> Response:
    """A strict content policy: scripts only from here (and the page's own import map,
    by nonce), nothing framed, no form posted elsewhere. Tiles may come from the one
    tile server configured, and a page's images from where it says (`Page.images_from`)."""
    tiles = settings.console.map_tiles_url
    tile_origin = ""
    if tiles:
        parts = urlsplit(tiles.replace("{s}", "a"))
        tile_origin = f" {parts.scheme}://{parts.netloc.replace('a.', '*.', 1)}"
    image_sources = "".join(f" {source}" for source in images_from)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
        f"style-src 'self' 'unsafe-inline'; img-src 'self' data:{tile_origin}{image_sources}; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def render(request: Request, template: str, *, settings: Settings,
           code: int = status.HTTP_200_OK, **context: Any) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = templates.TemplateResponse(
        request, template, {"nonce": nonce, "static": STATIC_URL, **context},
        status_code=code,
    )
    page = context.get("page")
    images_from = page.images_from if isinstance(page, Page) else ()
    return _security_headers(response, nonce=nonce, settings=settings, images_from=images_from)


def _member_of(caller: Caller) -> SignedIn:
    if not isinstance(caller.identity, SignedIn):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "the console is for members: sign in with your address")
    return caller.identity


def _context(session: SessionDep, settings: Settings, *, caller: Caller, tenant: str,
             page: Page) -> dict[str, Any]:
    """What the page's script needs: who is signed in, where, with what permissions."""
    signed = _member_of(caller)
    member = signed.member
    assert member.id is not None
    role = MemberRole(caller.role)
    granted = MEMBER_GRANTS[role]
    return {
        "tenant": tenant,
        "page": page.slug,
        "member": {"email": member.email, "name": member.name},
        "role": role.value,
        "role_label": role.label,
        "permissions": sorted(permission.value for permission in granted),
        "tenants": [{"tenant": row.tenant, "role": row.role}
                    for row in members.memberships(session, member_id=member.id)],
        "csrf_token": signed.session.csrf_token,
        "tiles": {"url": settings.console.map_tiles_url,
                  "attribution": settings.console.map_tiles_attribution},
    }


def _nav(granted: frozenset[Permission]) -> list[tuple[str, list[Page]]]:
    groups: dict[str, list[Page]] = {}
    for page in PAGES:
        if page.needs in granted:
            groups.setdefault(page.group, []).append(page)
    return list(groups.items())


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path of this site, nothing else (an open
    redirect would lend the sign-in page to phishing)."""
    if target and target.startswith("/console") and not target.startswith("//") and (
        "\\" not in target
    ):
        return target
    return "/console"


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, identity: Authenticated,
         tenant: str | None = None, page: str | None = None) -> Response:
    """A member's tenant (the first, or the one the switcher asks for), on the page asked
    for when their role there may open it, else on the first one it may."""
    if not isinstance(identity, SignedIn) or identity.member.id is None:
        return RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
    rows = members.memberships(session, member_id=identity.member.id)
    if not rows:
        return RedirectResponse("/console/account", status.HTTP_303_SEE_OTHER)
    chosen = next((row for row in rows if row.tenant == tenant), rows[0])
    granted = MEMBER_GRANTS[MemberRole(chosen.role)]
    wanted = PAGE_BY_SLUG.get(page or "")
    if wanted is not None and wanted.needs in granted:
        landing = wanted.slug
    else:
        landing = next(slug for slug in LANDING_ORDER if PAGE_BY_SLUG[slug].needs in granted)
    return RedirectResponse(f"/console/t/{quote(chosen.tenant)}/{landing}",
                            status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, settings: SettingsDep) -> Response:
    return render(request, "public.html", settings=settings, title="Sign in",
                  script="login", context={"next": safe_next(request.query_params.get("next"))})


@router.get("/invitations/{token}", response_class=HTMLResponse)
def invitation_page(request: Request, settings: SettingsDep, token: str) -> Response:
    return render(request, "public.html", settings=settings, title="Join",
                  script="invitation", context={"token": token})


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, session: SessionDep, settings: SettingsDep,
                 identity: Authenticated) -> Response:
    if not isinstance(identity, SignedIn) or identity.member.id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not signed in")
    rows = members.memberships(session, member_id=identity.member.id)
    return render(request, "public.html", settings=settings, title="Your account",
                  script="account", context={
                      "member": {"email": identity.member.email, "name": identity.member.name},
                      "tenants": [{"tenant": row.tenant, "role": row.role} for row in rows],
                      "csrf_token": identity.session.csrf_token,
                  })


@router.get("/t/{tenant}/{slug}", response_class=HTMLResponse)
def tenant_page(request: Request, session: SessionDep, settings: SettingsDep,
                caller: TenantCaller, tenant: str, slug: str) -> Response:
    page = PAGE_BY_SLUG.get(slug)
    if page is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"there is no page {slug!r}")
    context = _context(session, settings, caller=caller, tenant=tenant, page=page)
    granted = caller.permissions
    refusal = None
    if page.needs not in granted:
        label = MemberRole(caller.role).label
        refusal = (f"{page.title} is not open to your role ({label}): it needs "
                   f"{page.needs.value}. An owner of {tenant} can change your role.")
    return render(request, "shell.html", settings=settings, title=page.title, page=page,
                  nav=_nav(granted), context=context, refusal=refusal,
                  code=status.HTTP_403_FORBIDDEN if refusal else status.HTTP_200_OK)


async def console_errors(request: Request, error: Exception) -> Response:
    """Refusals on console pages as pages: not signed in, to the sign-in page and back;
    anything else, a page saying what is wrong. Elsewhere, the API's JSON answers."""
    assert isinstance(error, StarletteHTTPException)
    path = request.url.path
    if not path.startswith("/console") or path.startswith(STATIC_URL):
        return await http_exception_handler(request, error)
    if error.status_code == status.HTTP_401_UNAUTHORIZED:
        if path.rstrip("/") == "/console":
            return RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
        target = quote(path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/console/login?next={target}", status.HTTP_303_SEE_OTHER)
    settings: Settings = request.app.state.settings
    return render(request, "error.html", settings=settings, code=error.status_code,
                  title="Not here", message=str(error.detail))

