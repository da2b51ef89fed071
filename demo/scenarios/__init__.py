"""The demo shop's configuration as data (shop.json), shipped with the package."""
