"""Customers: profiles, the consent ledger, devices and their pseudonym links."""
