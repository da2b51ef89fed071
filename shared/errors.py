"""The one error type a contract violation raises."""


class ContractError(ValueError):
    """A payload, topic or identifier does not satisfy the wire contract.

    The message is meant for an operator reading a dead-letter table or a log:
    it names the field and the rule that failed, never the raw payload (which
    could carry something that should not be logged).
    """
