"""Test double for h5py: a fake "HDF5 file" is a JSON object whose "attrs"
entry stands in for the file's attributes. Only read access is supported."""

import json


class File:
    """Read-only stand-in for h5py.File exposing just ``attrs``."""

    def __init__(self, name, mode="r"):
        if mode != "r":
            raise NotImplementedError("fake h5py only reads")
        with open(name) as f:
            self.attrs = json.load(f)["attrs"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None
