"""What each kind of caller may do: one permission per kind of action, granted to the API
keys' roles and to the console members' roles.

Keys (`Role`): `admin` is the shop's back office and may do everything of its tenant;
`app` is the shop's app acting for the shopper in front of it (sign-up, profile, consent,
devices, coupons, location and open reports), each about one customer only with that
customer's token (`cloud.api.access.customer_claims`); `operator` runs the deployment and
reaches no tenant data, only the tenant's keys and members (to hand a tenant its first
ones).

Members (`MemberRole`), people signed in to the console:
- `owner`: everything of the tenant, members and keys included;
- `marketer`: offers, templates and scenarios, the tenant's quiet hours and time zone
  (when marketing may reach people, and on which clock), and the customers they are about;
- `store_operator`: stores, geofences and gateways, and the recent location fixes of
  consenting app users shown next to the geofences (to place them where phones really
  report);
- `analyst`: reads configuration, analytics and the audit log; changes nothing.
Every member reads the tenant's configuration and analytics.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from cloud.auth.models import Role


class MemberRole(StrEnum):
    OWNER = "owner"
    MARKETER = "marketer"
    STORE_OPERATOR = "store_operator"
    ANALYST = "analyst"

    @property
    def label(self) -> str:
        """How people name the role: "store operator"."""
        return self.value.replace("_", " ")


class Permission(StrEnum):
    """One kind of action on a tenant; a route needs exactly one."""

    #: Sign a customer up (the app), or create one (the back office).
    CUSTOMERS_CREATE = "customers.create"
    #: Profiles, and what was sent to them and why (messages, journeys).
    CUSTOMERS_READ = "customers.read"
    #: One customer's profile: the back office's, and the app's for its signed-in customer.
    PROFILE_READ = "profile.read"
    CUSTOMERS_ERASE = "customers.erase"
    #: A customer's consent answers, recorded and read back (the app asks them).
    CONSENT_RECORD = "consent.record"
    #: A customer's devices: push tokens, web push subscriptions, presence identifiers.
    DEVICES_REGISTER = "devices.register"
    #: A customer's coupons.
    COUPONS_READ = "coupons.read"
    LOCATIONS_REPORT = "locations.report"
    #: Where consenting app users were in the last day (`cloud.places.recent`): personal
    #: data, so only for those who place geofences (and owners), not for every reader.
    LOCATIONS_READ = "locations.read"
    #: The app reports that a push was opened.
    OPENS_REPORT = "opens.report"
    #: The tenant's web push public key, for a browser to subscribe with.
    WEB_PUSH_KEY = "web_push.key"
    #: Stores, geofences, offers, complements, templates, scenarios, preferences: read.
    CONFIG_READ = "config.read"
    #: Stores and geofences (and the gateways of a store).
    STORES_WRITE = "stores.write"
    #: Offers and complementary categories.
    OFFERS_WRITE = "offers.write"
    TEMPLATES_WRITE = "templates.write"
    SCENARIOS_WRITE = "scenarios.write"
    #: The tenant's own quiet hours and time zone (a store's own are `STORES_WRITE`'s, with
    #: the rest of the store).
    PREFERENCES_WRITE = "preferences.write"
    #: Footfall, gateway health, funnels, scenario reports, delivery attempts.
    ANALYTICS_READ = "analytics.read"
    KEYS_MANAGE = "keys.manage"
    MEMBERS_MANAGE = "members.manage"
    AUDIT_READ = "audit.read"


EVERYTHING = frozenset(Permission)
#: What the shop's app does for the shopper in front of it (an app key is public).
APP = frozenset({
    Permission.CUSTOMERS_CREATE, Permission.PROFILE_READ, Permission.CONSENT_RECORD,
    Permission.DEVICES_REGISTER,
    Permission.COUPONS_READ, Permission.LOCATIONS_REPORT, Permission.OPENS_REPORT,
    Permission.WEB_PUSH_KEY,
})
#: What every member of a tenant reads.
READING = frozenset({Permission.CONFIG_READ, Permission.ANALYTICS_READ})

KEY_GRANTS: Mapping[Role, frozenset[Permission]] = {
    Role.ADMIN: EVERYTHING,
    Role.APP: APP,
    Role.OPERATOR: frozenset({Permission.KEYS_MANAGE, Permission.MEMBERS_MANAGE}),
}
MEMBER_GRANTS: Mapping[MemberRole, frozenset[Permission]] = {
    MemberRole.OWNER: EVERYTHING,
    MemberRole.MARKETER: READING | {
        Permission.CUSTOMERS_READ, Permission.PROFILE_READ, Permission.COUPONS_READ,
        Permission.OFFERS_WRITE,
        Permission.TEMPLATES_WRITE, Permission.SCENARIOS_WRITE, Permission.PREFERENCES_WRITE,
    },
    MemberRole.STORE_OPERATOR: READING | {Permission.STORES_WRITE, Permission.LOCATIONS_READ},
    MemberRole.ANALYST: READING | {Permission.AUDIT_READ},
}
