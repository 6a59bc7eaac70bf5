"""Fan-out generators: a stage's `foreach` turns into a list of items (one per node).

Each generator reproduces a branch map of the Aframe law pipeline (numbering
included). Item fields are strings; a stage's command refers to them as
`{{ item.NAME }}`, which becomes the submit macro `$(NAME)` set per node by VARS.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aframe_dag import files, quoting, schema
from aframe_dag.errors import FanoutError, QuotingError
from aframe_dag.schema import rule

Item = dict[str, str]
MAX_ITEMS = 1_000_000
MAX_SEGMENTS_BYTES = 256 * 2**20  # a segments file is read up to this size


@dataclass(frozen=True, kw_only=True)
class Spec:
    """A generator's parameters; subclasses list their items."""

    def check(self) -> None:
        """Raise ValueError if the parameters contradict each other."""

    def inputs(self) -> list[str]:
        """Files the items are read from (they decide static vs run-time fan-out)."""
        return []

    def fields(self) -> list[str]:
        """Names of each item's fields."""
        raise NotImplementedError

    def items(self) -> list[Item]:
        """One item per node."""
        raise NotImplementedError


def num(value: float) -> str:
    """Format a number the way Aframe file names and CLIs show it (no trailing .0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def num_list(values: list[float]) -> str:
    """A list as jsonargparse reads it on a command line: [1,2]."""
    return "[" + ",".join(num(v) for v in values) + "]"


# --- segment files ------------------------------------------------------------


def read_segments(path: str) -> list[tuple[float, float]]:
    """(start, duration) pairs of a segwizard file: index, start, stop, duration."""
    try:
        text = files.read_text(path, MAX_SEGMENTS_BYTES, pipe=True)
    except OSError as exc:
        raise FanoutError(f"{path}: cannot read segments file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        number = exc.object[: exc.start].count(b"\n") + 1
        raise FanoutError(f"{path}:{number}: not a segments file (not UTF-8 text)") from None
    segments = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            if len(fields) != 4:
                raise ValueError
            start, duration = float(fields[1]), float(fields[3])
            if not (math.isfinite(start) and math.isfinite(duration) and duration > 0):
                raise ValueError
        except ValueError:
            raise FanoutError(
                f"{path}:{number}: expected 'index start stop duration' (numbers, "
                f"duration > 0), got {line!r}"
            ) from None
        segments.append((start, duration))
    return segments


def chunk_segments(
    segments: list[tuple[float, float]], max_duration: float
) -> list[tuple[float, float]]:
    """Split segments into pieces of at most `max_duration` s (-1: no split), as Fetch does."""
    chunks: list[tuple[float, float]] = []
    for start, duration in segments:
        step = duration if max_duration == -1 else max_duration
        pieces = (duration - 1) // step + 1
        if len(chunks) + pieces > MAX_ITEMS:  # before making them: it may be 10^15
            raise too_many(f"over {MAX_ITEMS}")
        for j in range(int(pieces)):
            chunk_start = start + j * step
            chunks.append((chunk_start, min(start + duration - chunk_start, step)))
    return chunks


def background_segments(path: str, max_duration: float) -> list[tuple[float, float]]:
    """(start, stop) of each fetched background file, as parsed back from its name."""
    return [
        (float(int(start)), float(int(start)) + float(int(duration)))
        for start, duration in chunk_segments(read_segments(path), max_duration)
    ]


def segment_tag(start: float, stop: float) -> str:
    """The `start-duration` part of a background file name."""
    return f"{int(start)}-{int(stop - start)}"


def is_analysable(start: float, stop: float, shifts: list[float], psd_length: float) -> bool:
    """Aframe's rule: time left after the largest shift and the PSD burn-in is > 0."""
    return (stop - start) - max(shifts) - psd_length > 0


def shifts_from_tb(
    segments: list[tuple[float, float]], tb: float, shift: float, psd_length: float
) -> int:
    """Number of timeslides needed to accumulate `tb` seconds of background."""
    if tb == 0:
        return 0
    durations = [stop - start - psd_length for start, stop in segments]
    livetime, count = 0.0, 0
    while livetime < tb:
        count += 1
        if count > MAX_ITEMS:
            raise too_many(f"over {MAX_ITEMS}")  # each shift is one node at least
        # a segment the shift has used up adds 0.0 now and at every larger shift: dropped,
        # so the sum stays the same and the work is the nodes', not shifts x segments
        durations = [d for d in durations if d - shift * count > 0]
        added = sum(d - shift * count for d in durations)
        if added == 0:
            raise FanoutError(
                f"Tb = {num(tb)} s cannot be reached: {count - 1} shifts of {num(shift)} s "
                f"give {num(livetime)} s of background and more shifts add none"
            )
        livetime += added
    return count


def shifts_from_num_signals(
    segments: list[tuple[float, float]],
    num_signals: int,
    waveform_duration: float,
    spacing: float,
    shift: float,
    buffer: float,
) -> int:
    """Number of timeslides needed to place `num_signals` injections (Aframe's quadratic)."""
    buffer += waveform_duration // 2
    spacing += waveform_duration
    total = sum(stop - start for start, stop in segments)
    a = -shift / 2
    b = total - 2 * buffer - shift / 2
    c = -num_signals * spacing
    if a == 0:
        return math.ceil(-c / b) if b > 0 else 0
    discriminant = b**2 - 4 * a * c
    if discriminant < 0:
        raise FanoutError(
            f"{num_signals} signals cannot be placed in {total} s of background "
            f"with spacing {spacing} s and shift {shift} s"
        )
    return math.ceil((-b + discriminant**0.5) / (2 * a))


# --- generators -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Count(Spec):
    """`num_jobs` nodes; `num_signals` split evenly, node 0 takes the remainder."""

    num_jobs: int = rule(ge=1, le=MAX_ITEMS)
    num_signals: int | None = rule(None, ge=0)
    start_index: int = rule(0, ge=0)
    # optional: expose the last background file of a segments file as item.psd_segment
    psd_segments: str | None = None
    max_duration: float = -1

    def check(self) -> None:
        _check_max_duration(self.max_duration)

    def inputs(self) -> list[str]:
        return [self.psd_segments] if self.psd_segments else []

    def fields(self) -> list[str]:
        optional = {"num_signals": self.num_signals is not None, "psd_segment": self.psd_segments}
        return ["index", *(k for k, wanted in optional.items() if wanted)]

    def items(self) -> list[Item]:
        extra = {}
        if self.psd_segments:
            extra["psd_segment"] = _last_segment(self.psd_segments, self.max_duration)
        indices = map(str, range(self.start_index, self.start_index + self.num_jobs))
        if self.num_signals is None:
            items = [{"index": i} for i in indices]
        else:
            share, remainder = divmod(self.num_signals, self.num_jobs)
            text = str(share)
            items = [{"index": i, "num_signals": text} for i in indices]
            items[0]["num_signals"] = str(share + remainder)
        if extra:
            for item in items:
                item.update(extra)
        return items


@dataclass(frozen=True)
class ListOf(Spec):
    """One node per value: `list: {name: [values]}`."""

    values: dict[str, list[Any]]

    def check(self) -> None:
        _check_lists(self.values, exactly_one=True)

    def fields(self) -> list[str]:
        return ["index", *self.values]

    def items(self) -> list[Item]:
        return _product(self.values)


@dataclass(frozen=True)
class Product(ListOf):
    """One node per combination: `product: {a: [...], b: [...]}` (last key fastest)."""

    def check(self) -> None:
        _check_lists(self.values, exactly_one=False)


@dataclass(frozen=True, kw_only=True)
class Segments(Spec):
    """One node per piece (at most `max_duration` s) of each segment in a segwizard file."""

    file: str
    max_duration: float = -1
    start_index: int = rule(1, ge=0)

    def check(self) -> None:
        _check_max_duration(self.max_duration)

    def inputs(self) -> list[str]:
        return [self.file]

    def fields(self) -> list[str]:
        return ["index", "start", "end", "duration", "segment"]

    def items(self) -> list[Item]:
        chunks = chunk_segments(read_segments(self.file), self.max_duration)
        return [
            {
                "index": str(self.start_index + n),
                "start": num(start),
                "end": num(start + duration),
                "duration": num(duration),
                "segment": f"{int(start)}-{int(duration)}",
            }
            for n, (start, duration) in enumerate(chunks)
        ]


@dataclass(frozen=True, kw_only=True)
class Timeslides(Spec):
    """Background files x timeslides that leave analysable time (Aframe's rule).

    The number of shifts comes from `num_signals` (testing waveforms: shifts
    1..N, never zero-lag) or from `Tb` (inference: optional zero-lag first).
    """

    segments: str
    max_duration: float = -1
    shifts: list[float] = rule(min_length=1)
    psd_length: float = rule(ge=0)
    Tb: float | None = rule(None, ge=0)
    zero_lag: bool = False
    num_signals: int | None = rule(None, ge=0)
    spacing: float | None = rule(None, gt=0)
    buffer: float | None = rule(None, ge=0)
    waveform_duration: float | None = rule(None, ge=0)
    start_index: int = rule(0, ge=0)

    def check(self) -> None:
        _check_max_duration(self.max_duration)
        by_signals = (self.num_signals, self.spacing, self.buffer, self.waveform_duration)
        if (self.Tb is None) == (self.num_signals is None):
            raise ValueError("give exactly one of Tb or num_signals")
        if self.num_signals is not None and None in by_signals:
            raise ValueError("num_signals needs spacing, buffer and waveform_duration")
        if max(self.shifts) <= 0:
            raise ValueError("the largest shift must be > 0")

    def inputs(self) -> list[str]:
        return [self.segments]

    def fields(self) -> list[str]:
        return [
            "index",
            "start",
            "end",
            "analysis_start",
            "segment",
            "shifts",
            "shift_tag",
            "psd_segment",
        ]

    def count(self, segments: list[tuple[float, float]]) -> int:
        """How many shifts the rule asks for on these segments."""
        if self.Tb is not None:
            return shifts_from_tb(segments, self.Tb, max(self.shifts), self.psd_length)
        return shifts_from_num_signals(
            segments,
            self.num_signals or 0,
            self.waveform_duration or 0,
            self.spacing or 0,
            max(self.shifts),
            self.buffer or 0,
        )

    def candidates(self, num_shifts: int) -> Iterator[list[float]]:
        """The shifts tried on each background file, in order: made as they are tried,
        since a file usually stops long before the last of up to 10^6."""
        if self.zero_lag:
            yield [0.0] * len(self.shifts)
        for i in range(num_shifts):
            yield [s * (i + 1) for s in self.shifts]

    def items(self) -> list[Item]:
        segments = background_segments(self.segments, self.max_duration)
        if not segments:
            return []
        num_shifts = self.count(segments)
        if num_shifts > MAX_ITEMS:
            raise too_many(f"over {MAX_ITEMS}")
        psd_segment = segment_tag(*segments[-1])
        items: list[Item] = []
        for start, stop in segments:
            for shift in self.candidates(num_shifts):
                if not is_analysable(start, stop, shift, self.psd_length):
                    break  # the shifts only grow: no later one leaves time either
                if len(items) == MAX_ITEMS:
                    raise too_many(f"over {MAX_ITEMS}")
                items.append(
                    {
                        "index": str(self.start_index + len(items)),
                        "start": num(start),
                        "end": num(stop),
                        "analysis_start": num(start + self.psd_length),
                        "segment": segment_tag(start, stop),
                        "shifts": num_list(shift),
                        "shift_tag": "-".join(num(s) for s in shift),
                        "psd_segment": psd_segment,
                    }
                )
        return items


GENERATORS: dict[str, type[Spec]] = {
    "count": Count,
    "list": ListOf,
    "product": Product,
    "segments": Segments,
    "timeslides": Timeslides,
}


def _check_max_duration(value: float) -> None:
    if value != -1 and value <= 0:
        raise ValueError(f"max_duration must be > 0 or -1 (no split), got {value}")


def _check_lists(values: dict[str, Any], exactly_one: bool) -> None:
    if exactly_one and len(values) != 1:
        raise ValueError("give exactly one name: list of values")
    if not values:
        raise ValueError("give at least one name: list of values")
    for name, options in values.items():
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a valid item name")
        if name == "index":
            raise ValueError("'index' is reserved for the node number; choose another name")
        if not isinstance(options, list) or not options:
            raise ValueError(f"{name} must be a non-empty list of values")


def _product(values: dict[str, list[Any]]) -> list[Item]:
    names = list(values)
    size = math.prod(len(values[n]) for n in names)
    if size > MAX_ITEMS:  # before making them: 10^3 x 10^3 x 10^3 is quick to ask for
        raise too_many(str(size))
    # each value as text once, not once per combination it is in (10^5 times, say)
    texts = [[_text(v) for v in values[n]] for n in names]
    combos = itertools.product(*texts)
    return [
        {"index": str(n), **dict(zip(names, combo, strict=True))} for n, combo in enumerate(combos)
    ]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return num(value)
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value)


def _last_segment(path: str, max_duration: float) -> str:
    segments = background_segments(path, max_duration)
    if not segments:
        raise FanoutError(f"{path}: no segments, so there is no background file for the PSD")
    return segment_tag(*segments[-1])


def too_many(count: str) -> FanoutError:
    """The error of a fan-out over the limit (said before its items are made, if it can)."""
    return FanoutError(
        f"fan-out of {count} nodes exceeds the limit of {MAX_ITEMS}; "
        "use larger pieces (e.g. max_duration) or fewer values"
    )


def parse_spec(name: str, params: Any, where: Callable[[str], str]) -> Spec:
    """Validate a generator's parameters; `where(key)` prefixes error messages."""
    cls = GENERATORS[name]
    try:
        if cls in (ListOf, Product):
            if not isinstance(params, dict):
                raise schema.SchemaError((), f"must be a mapping of name: [values], got {params!r}")
            spec: Spec = cls(values=dict(params))
            spec.check()
            return spec
        spec = schema.validate(cls, params)
        for file in spec.inputs():  # named in the DAG and .sub files' comments
            quoting.check_value(file, "input file")
        return spec
    except QuotingError as exc:
        raise FanoutError(f"{where('')}: {exc}") from None
    except ValueError as exc:
        path = exc.path if isinstance(exc, schema.SchemaError) else ()
        message = exc.message if isinstance(exc, schema.SchemaError) else str(exc)
        raise FanoutError(f"{where('.'.join(map(str, path)))}: {message}") from None


def expand(spec: Spec, stage: str) -> list[Item]:
    """All items of a generator, or a FanoutError naming the stage."""
    try:
        items = spec.items()
    except FanoutError as exc:
        raise FanoutError(f"stage {stage}: {exc}") from None
    except OverflowError as exc:  # e.g. num_signals of 400 digits
        raise FanoutError(f"stage {stage}: numbers too large to count the nodes: {exc}") from None
    if len(items) > MAX_ITEMS:
        raise FanoutError(f"stage {stage}: {too_many(str(len(items)))}")
    return items
