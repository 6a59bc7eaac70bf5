"""Fake ``ledger.injections``: the classes and factory entry scripts use."""

from ledger.ledger import Ledger


class WaveformPolarizationSet(Ledger):
    pass


class InjectionParameterSet(Ledger):
    pass


class WaveformSet(Ledger):
    pass


class InterferometerResponseSet(WaveformSet):
    pass


def waveform_class_factory(ifos, base_cls, cls_name):
    """Return a subclass named cls_name remembering its base and ifos."""
    attrs = {"base": base_cls.__name__, "ifos": list(ifos)}
    return type(cls_name, (base_cls,), attrs)
