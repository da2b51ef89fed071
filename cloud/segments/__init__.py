"""Segments as stored: a tenant's named condition sets, every version of each, and the
daily count of their members.

- `models`: the `segment`, `segment_version` and `segment_count` tables;
- `crud`: saving a new version, archiving, reading versions and counts back.

The conditions are stored as the JSON the API took; what they mean (validation,
evaluation, the checks a save makes) is the scenario engine's, in
`cloud.scenarios.segments`, one layer up: scenarios name segments, and segments are
written in the scenarios' condition language.
"""
