"""Fake ``ledger.ledger.Ledger``: records calls instead of doing HDF5 I/O."""

import json
import os


def record(**call):
    """Append one call to the $FAKE_LEDGER_LOG JSON-lines file."""
    with open(os.environ["FAKE_LEDGER_LOG"], "a") as f:
        f.write(json.dumps(call) + "\n")


class FakeArray:
    """Stands in for a numpy array: only ``len`` and ``shape``."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __len__(self):
        return self.shape[0]


class Ledger:
    base = None  # name of the base class given to waveform_class_factory
    ifos = None  # ifos given to waveform_class_factory

    def __init__(self, fname):
        self.fname = fname

    @classmethod
    def describe(cls):
        return {"cls": cls.__name__, "base": cls.base, "ifos": cls.ifos}

    @classmethod
    def read(cls, fname):
        record(call="read", **cls.describe(), fname=str(fname))
        return cls(fname)

    def get_waveforms(self):
        with open(self.fname) as f:
            return FakeArray(json.load(f)["waveform_shape"])

    def sort_by(self, attr):
        record(call="sort_by", **self.describe(), attr=attr)
        return self

    def write(self, fname, chunks=None):
        record(call="write", **self.describe(), fname=str(fname), chunks=chunks)

    @classmethod
    def aggregate(cls, files, fname, dtype=None, clean=True, chunks=None, length=None):
        files = list(files)
        record(
            call="aggregate",
            **cls.describe(),
            files=[str(f) for f in files],
            fname=str(fname),
            dtype=dtype,
            clean=clean,
            chunks=chunks,
            length=length,
        )
        total = 0
        for source in files:
            with open(source) as f:  # sources must exist, like the real one
                total += json.load(f)["attrs"]["length"]
            if clean:
                source.unlink()  # the real one also needs Path objects here
        with open(fname, "w") as f:
            json.dump({"attrs": {"length": total if length is None else length}}, f)
