"""Test double for Aframe's ``ledger`` library.

Each call at the library boundary (read, aggregate, sort_by, write) is
appended as one JSON line to the file named by $FAKE_LEDGER_LOG, so tests can
compare the calls an entry script makes with those Aframe's law task makes.
Fake data files are JSON: {"attrs": {"length": N}, "waveform_shape": [...]}.
"""
