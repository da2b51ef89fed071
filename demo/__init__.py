"""`make demo`: the Vitrina story end to end on one machine, with nothing to configure."""
