"""Messages decided by rules and scenarios, and their delivery outcome."""
