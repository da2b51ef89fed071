"""A tenant's own quiet hours and time zone (set through the API and the console), a
store's own quiet hours, and the one rule that decides which apply to a send
(`precedence.resolve`).

The deployment's settings (`scenarios.quiet_hours`, `scenarios.tenant_quiet_hours`,
`scenarios.default_time_zone`) remain the defaults; what a tenant or a store sets here
comes before them. This package sits below the domains that use it (stores in
`cloud.places`, sends and birthdays in `cloud.scenarios`) and knows none of them.
"""
