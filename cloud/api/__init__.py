"""The orchestrator's HTTP API (`create_app`); one module per part of the product, all
mounted by `cloud.api.app`."""

from cloud.api.app import create_app

__all__ = ["create_app"]
