"""Everything about bringing a gateway or a broker into service: broker configs and
credentials, local brokers for the demo and tests, config bundles, systemd units."""
