"""Webhooks between the shop and Vitrina: signed the same way both ways (`signing`);
the shop's events coming in (`inbound`), scenario steps' webhooks going out (`outbound`)."""
