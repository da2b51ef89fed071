"""The store's own beacon, advertised by the gateway (see `shared.beacon`)."""
