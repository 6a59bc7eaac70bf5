"""Fake ``ledger.events``: the event classes entry scripts use."""

from ledger.ledger import Ledger


class EventSet(Ledger):
    pass


class RecoveredInjectionSet(EventSet):
    pass
