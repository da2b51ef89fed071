"""What a provider call did for one address: the one answer every channel's sender gives."""

from __future__ import annotations

from dataclasses import dataclass, replace

#: The address is gone for good (app uninstalled, token of another sender, subscription
#: expired): the caller should forget it, not only give up on this message.
DEAD_ADDRESS_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
#: The sender did not send it: no request slot to the provider's host before the send's
#: deadline (cloud.channels.inflight). Nothing reached the provider; it waits in the queue.
NOT_SENT = "NOT_SENT"
#: The provider may accept the same message later: worth another try after a wait.
TRANSIENT_CODES = frozenset(
    {"UNAVAILABLE", "INTERNAL", "QUOTA_EXCEEDED", "DEADLINE_EXCEEDED", NOT_SENT}
)


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one message. `permanent` errors (dead token) must not be retried.

    Three kinds of failure: `permanent` (this message can never be delivered to this
    address; `address_dead` says whether to drop the address too), `transient` (retry,
    no sooner than `retry_after_s` if set), and neither (configuration or credentials:
    retrying now is pointless, an operator has to act; the message is still deliverable).
    """

    token: str
    ok: bool
    provider_message_id: str | None = None
    error_code: str | None = None
    permanent: bool = False
    retry_after_s: float | None = None
    #: This try's own time with the provider: from its request's start on a connection
    #: (connecting included, for a new one) to the answer, never the wait for a slot
    #: (None: the sender does not measure it per address; the caller times the call).
    latency_ms: int | None = None
    #: The tries before this one within the same send call, oldest first: every one is
    #: a provider call on the message's record.
    earlier: tuple[SendResult, ...] = ()

    def history(self) -> tuple[SendResult, ...]:
        """Every try of the send call, oldest first, this one last."""
        if not self.earlier:
            return (self,)
        return (*self.earlier, replace(self, earlier=()))

    def after(self, earlier: tuple[SendResult, ...]) -> SendResult:
        """This result with `earlier` tries before its own."""
        if not earlier:
            return self
        return replace(self, earlier=(*earlier, *self.earlier))

    @property
    def transient(self) -> bool:
        return not self.ok and not self.permanent and self.error_code in TRANSIENT_CODES

    @property
    def address_dead(self) -> bool:
        return not self.ok and self.error_code in DEAD_ADDRESS_CODES
