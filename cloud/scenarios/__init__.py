"""Scenarios: who gets which message when.

Everything that can start or resume a scenario is first written as a trigger
(`triggers`), in the transaction of whatever caused it; the engine reads triggers, matches
them against the tenant's scenarios (data, not code) and runs their steps.
"""
