"""The orchestrator: ingests presence, links pseudonyms to consenting customers,
runs the shop's scenarios and delivers messages. Imports `shared` only, never `edge`."""
