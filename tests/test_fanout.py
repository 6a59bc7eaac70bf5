"""Tests for aframe_dag/fanout.py: the fan-out generators and their helpers.

Every expected value below is worked out by hand from the Aframe rules in
/work/shared/reference/aframe-pipeline.md (sections 1.4, 1.5, 1.7, 1.10) and
from libs/utils/utils/data.py of Aframe; the arithmetic is in the comment above
each case. Nothing here was obtained by running the code and pasting its output.

Background files are named `background-{int(start)}-{int(duration)}.hdf5` and
downstream tasks parse start/duration back from the names, so segments seen by
the timeslide rules are int-truncated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aframe_dag.errors import FanoutError
from aframe_dag.fanout import (
    MAX_ITEMS,
    Count,
    ListOf,
    Product,
    Segments,
    Timeslides,
    background_segments,
    chunk_segments,
    expand,
    is_analysable,
    parse_spec,
    read_segments,
    segment_tag,
    shifts_from_num_signals,
    shifts_from_tb,
)

HEADER = "# seg\tstart\tstop\tduration"


def where(key: str) -> str:
    return f"stages.s.foreach.{key}"


def write(tmp_path: Path, *lines: str, name: str = "segments.txt") -> str:
    """A segwizard file (tab separated, gwpy's header) with the given lines."""
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def seg_lines(*rows: tuple[str, str, str]) -> list[str]:
    """Segwizard rows 'index<TAB>start<TAB>stop<TAB>duration' after the header."""
    return [HEADER] + [f"{i}\t{start}\t{stop}\t{dur}" for i, (start, stop, dur) in enumerate(rows)]


def pairs(items: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(item["segment"], item["shifts"]) for item in items]


# --- read_segments --------------------------------------------------------------


def test_read_segments_skips_header_comments_and_blank_lines(tmp_path):
    # Columns 1 and 3 are (start, duration); the stop column is not used.
    # Lines: 1 header, 2 data, 3 blank, 4 comment, 5 data (spaces), 6 data (floats).
    path = write(
        tmp_path,
        HEADER,
        "0\t1240000000\t1240000500\t500",
        "",
        "# a comment between rows",
        "1   1240001000   1240001070   70",
        "2\t1240002000.5\t1240002100.75\t100.25",
    )
    assert read_segments(path) == [
        (1240000000.0, 500.0),
        (1240001000.0, 70.0),
        (1240002000.5, 100.25),
    ]


def test_read_segments_bad_line_names_file_and_line(tmp_path):
    # Line 3 has 3 columns instead of 4.
    path = write(tmp_path, HEADER, "0\t100\t200\t100", "1\t300\t400")
    with pytest.raises(FanoutError, match=rf"^{path}:3: expected 'index start stop duration'"):
        read_segments(path)


def test_read_segments_non_numeric_names_file_and_line(tmp_path):
    # Line 2: the start column is not a number.
    path = write(tmp_path, HEADER, "0\tabc\t200\t100")
    with pytest.raises(FanoutError, match=rf"^{path}:2: "):
        read_segments(path)


def test_read_segments_header_without_hash_is_a_bad_line(tmp_path):
    # A header that does not start with '#' is 4 words but not numbers: line 1.
    path = write(tmp_path, "seg start stop duration", "0\t100\t200\t100")
    with pytest.raises(FanoutError, match=rf"^{path}:1: "):
        read_segments(path)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_read_segments_non_finite_is_a_bad_line(tmp_path, value):
    # BUG (robustness): float("nan") / float("inf") parse, so read_segments accepts
    # the line, and chunk_segments later crashes with a bare ValueError/OverflowError
    # from int(nan) / int(inf) instead of a one-line FanoutError. A segment time must
    # be a finite number, so line 2 should be reported as a bad line.
    path = write(tmp_path, HEADER, f"0\t1240000000\t{value}\t{value}")
    with pytest.raises(FanoutError, match=rf"^{path}:2: "):
        read_segments(path)


def test_read_segments_empty_files(tmp_path):
    assert read_segments(write(tmp_path, name="empty.txt")) == []
    assert read_segments(write(tmp_path, HEADER, name="header.txt")) == []


def test_read_segments_missing_file(tmp_path):
    path = str(tmp_path / "nope.txt")
    with pytest.raises(FanoutError, match="cannot read segments file"):
        read_segments(path)


# --- chunking, background files, analysable rule -----------------------------------


def test_chunk_segments_fetch_rule():
    # 500 s, max 200: num_steps = (500-1)//200 + 1 = 2 + 1 = 3;
    # chunks at 0, 200, 400 of min(500-0,200)=200, min(500-200,200)=200, min(500-400,200)=100.
    assert chunk_segments([(0.0, 500.0)], 200) == [(0.0, 200.0), (200.0, 200.0), (400.0, 100.0)]
    # max -1: step = duration = 500, (499)//500 + 1 = 1 piece.
    assert chunk_segments([(0.0, 500.0)], -1) == [(0.0, 500.0)]


def test_background_segments_are_int_truncated(tmp_path):
    # File names keep int(start), int(duration):
    # start 1240000000.7 -> 1240000000, duration 100.2 -> 100, stop = 1240000100.
    path = write(tmp_path, *seg_lines(("1240000000.7", "1240000100.9", "100.2")))
    assert background_segments(path, -1) == [(1240000000.0, 1240000100.0)]


def test_background_segments_split_by_max_duration(tmp_path):
    # 250 s, max 100: (249)//100 + 1 = 3 chunks of 100, 100, min(250-200,100)=50.
    path = write(tmp_path, *seg_lines(("1240000000", "1240000250", "250")))
    assert background_segments(path, 100) == [
        (1240000000.0, 1240000100.0),
        (1240000100.0, 1240000200.0),
        (1240000200.0, 1240000250.0),
    ]
    assert segment_tag(1240000200.0, 1240000250.0) == "1240000200-50"


def test_is_analysable_aframe_examples():
    # Aframe docstring: 1000 - max([0,1,2]) - 64 = 934 > 0 -> True
    assert is_analysable(0, 1000, [0, 1, 2], 64)
    # 65 - 2 - 64 = -1 -> False
    assert not is_analysable(0, 65, [0, 1, 2], 64)
    # boundary: 66 - 2 - 64 = 0, not > 0 -> False; 67 - 2 - 64 = 1 -> True
    assert not is_analysable(0, 66, [0, 1, 2], 64)
    assert is_analysable(0, 67, [0, 1, 2], 64)


# --- Segments generator (section 1.4) ------------------------------------------------


def segments_items(path: str, max_duration: float, **extra) -> list[dict[str, str]]:
    spec = parse_spec("segments", {"file": path, "max_duration": max_duration, **extra}, where)
    return expand(spec, "fetch")


def test_segments_shorter_than_max_duration_is_one_piece(tmp_path):
    # 100 s, max 200: (100-1)//200 + 1 = 0 + 1 = 1 piece; ids start at 1.
    path = write(tmp_path, *seg_lines(("1000000000", "1000000100", "100")))
    assert segments_items(path, 200) == [
        {
            "index": "1",
            "start": "1000000000",
            "end": "1000000100",
            "duration": "100",
            "segment": "1000000000-100",
        }
    ]


def test_segments_exactly_max_duration_is_one_piece(tmp_path):
    # 100 s, max 100: (100-1)//100 + 1 = 0 + 1 = 1 piece.
    path = write(tmp_path, *seg_lines(("1000000000", "1000000100", "100")))
    items = segments_items(path, 100)
    assert [(i["index"], i["start"], i["duration"]) for i in items] == [("1", "1000000000", "100")]


def test_segments_max_duration_plus_one_is_two_pieces(tmp_path):
    # 101 s, max 100: (101-1)//100 + 1 = 1 + 1 = 2 pieces:
    # j=0: start 1000000000, min(101, 100) = 100
    # j=1: start 1000000100, min(1000000000+101-1000000100, 100) = min(1, 100) = 1
    path = write(tmp_path, *seg_lines(("1000000000", "1000000101", "101")))
    assert segments_items(path, 100) == [
        {
            "index": "1",
            "start": "1000000000",
            "end": "1000000100",
            "duration": "100",
            "segment": "1000000000-100",
        },
        {
            "index": "2",
            "start": "1000000100",
            "end": "1000000101",
            "duration": "1",
            "segment": "1000000100-1",
        },
    ]


def test_segments_three_segments_numbered_in_order(tmp_path):
    # max 1000:
    #   A 1000000000, 300 s: (299)//1000+1 = 1 piece                     -> id 1
    #   B 1000001000, 2500 s: (2499)//1000+1 = 2+1 = 3 pieces
    #     1000001000/1000, 1000002000/1000, 1000003000/min(2500-2000,1000)=500 -> ids 2,3,4
    #   C 1000005000, 1000 s: (999)//1000+1 = 1 piece                     -> id 5
    path = write(
        tmp_path,
        *seg_lines(
            ("1000000000", "1000000300", "300"),
            ("1000001000", "1000003500", "2500"),
            ("1000005000", "1000006000", "1000"),
        ),
    )
    items = segments_items(path, 1000)
    assert [(i["index"], i["start"], i["end"], i["duration"], i["segment"]) for i in items] == [
        ("1", "1000000000", "1000000300", "300", "1000000000-300"),
        ("2", "1000001000", "1000002000", "1000", "1000001000-1000"),
        ("3", "1000002000", "1000003000", "1000", "1000002000-1000"),
        ("4", "1000003000", "1000003500", "500", "1000003000-500"),
        ("5", "1000005000", "1000006000", "1000", "1000005000-1000"),
    ]


def test_segments_no_split(tmp_path):
    # max -1: step = duration = 50000; (49999)//50000 + 1 = 1 piece.
    path = write(tmp_path, *seg_lines(("1000000000", "1000050000", "50000")))
    items = segments_items(path, -1)
    assert [(i["index"], i["duration"]) for i in items] == [("1", "50000")]


def test_segments_default_is_no_split(tmp_path):
    # max_duration defaults to -1: same single 50000-s piece.
    path = write(tmp_path, *seg_lines(("1000000000", "1000050000", "50000")))
    spec = parse_spec("segments", {"file": path}, where)
    assert [i["duration"] for i in expand(spec, "fetch")] == ["50000"]


def test_segments_float_fields(tmp_path):
    # start 1000000000.5, duration 100.5 (one piece with max -1):
    # end = 1000000000.5 + 100.5 = 1000000101 (integral float shown without .0);
    # segment tag = int(1000000000.5)-int(100.5) = 1000000000-100.
    path = write(tmp_path, *seg_lines(("1000000000.5", "1000000101", "100.5")))
    assert segments_items(path, -1) == [
        {
            "index": "1",
            "start": "1000000000.5",
            "end": "1000000101",
            "duration": "100.5",
            "segment": "1000000000-100",
        }
    ]


def test_segments_start_index(tmp_path):
    # 101 s, max 100 -> 2 pieces; start_index 0 numbers them 0, 1.
    path = write(tmp_path, *seg_lines(("1000000000", "1000000101", "101")))
    assert [i["index"] for i in segments_items(path, 100, start_index=0)] == ["0", "1"]


def test_segments_empty_file_expands_to_nothing(tmp_path):
    path = write(tmp_path, HEADER)
    assert segments_items(path, 200) == []


def test_segments_inputs_and_fields(tmp_path):
    path = write(tmp_path, *seg_lines(("1000000000", "1000000100", "100")))
    spec = parse_spec("segments", {"file": path}, where)
    assert isinstance(spec, Segments)
    assert spec.inputs() == [path]
    assert sorted(expand(spec, "fetch")[0]) == sorted(spec.fields())


@pytest.mark.parametrize("value", [0, -2, -0.5])
def test_segments_bad_max_duration(tmp_path, value):
    path = write(tmp_path, HEADER)
    with pytest.raises(FanoutError, match=r"max_duration must be > 0 or -1 \(no split\)"):
        parse_spec("segments", {"file": path, "max_duration": value}, where)


# --- Count (section 1.5) -------------------------------------------------------------


def count_items(**params) -> list[dict[str, str]]:
    return expand(parse_spec("count", params, where), "deploy")


def test_count_even_split():
    # divmod(100000, 10) = (10000, 0): 10 jobs of 10000, ids 0..9.
    items = count_items(num_jobs=10, num_signals=100000)
    assert items == [{"index": str(n), "num_signals": "10000"} for n in range(10)]


def test_count_branch_zero_takes_remainder():
    # divmod(10, 3) = (3, 1): branch 0 gets 3 + 1 = 4, the others 3 -> [4, 3, 3].
    items = count_items(num_jobs=3, num_signals=10)
    assert items == [
        {"index": "0", "num_signals": "4"},
        {"index": "1", "num_signals": "3"},
        {"index": "2", "num_signals": "3"},
    ]


def test_count_fewer_signals_than_jobs():
    # divmod(2, 3) = (0, 2): [0 + 2, 0, 0] = [2, 0, 0].
    items = count_items(num_jobs=3, num_signals=2)
    assert [i["num_signals"] for i in items] == ["2", "0", "0"]


def test_count_without_num_signals_is_index_only():
    spec = parse_spec("count", {"num_jobs": 2}, where)
    assert isinstance(spec, Count)
    assert spec.fields() == ["index"]
    assert spec.inputs() == []
    assert expand(spec, "deploy") == [{"index": "0"}, {"index": "1"}]


def test_count_start_index():
    # start_index 5, 2 jobs -> ids 5, 6; divmod(7, 2) = (3, 1) -> [4, 3].
    items = count_items(num_jobs=2, num_signals=7, start_index=5)
    assert items == [{"index": "5", "num_signals": "4"}, {"index": "6", "num_signals": "3"}]


def test_count_psd_segment_is_last_chunk(tmp_path):
    # Segments 1240000000/500 s and 1240001000/70 s.
    # max 200: first -> (499)//200+1 = 3 chunks (last 1240000400/100), second -> 1 chunk
    # 1240001000/70; the last chunk of all is "1240001000-70".
    path = write(
        tmp_path,
        *seg_lines(("1240000000", "1240000500", "500"), ("1240001000", "1240001070", "70")),
    )
    spec = parse_spec(
        "count", {"num_jobs": 2, "num_signals": 5, "psd_segments": path, "max_duration": 200}, where
    )
    assert spec.inputs() == [path]
    # divmod(5, 2) = (2, 1) -> [3, 2]
    items = expand(spec, "validation")
    assert items == [
        {"index": "0", "num_signals": "3", "psd_segment": "1240001000-70"},
        {"index": "1", "num_signals": "2", "psd_segment": "1240001000-70"},
    ]
    assert sorted(items[0]) == sorted(spec.fields())


def test_count_psd_segment_split_last_segment(tmp_path):
    # One segment 1240000000/500 s.
    # max 200: chunks at +0/200, +200/200, +400/min(500-400,200)=100 -> "1240000400-100".
    # max -1: one chunk "1240000000-500".
    path = write(tmp_path, *seg_lines(("1240000000", "1240000500", "500")))
    split = count_items(num_jobs=1, psd_segments=path, max_duration=200)
    whole = count_items(num_jobs=1, psd_segments=path)
    assert split == [{"index": "0", "psd_segment": "1240000400-100"}]
    assert whole == [{"index": "0", "psd_segment": "1240000000-500"}]


def test_count_psd_segments_empty_file(tmp_path):
    path = write(tmp_path, HEADER)
    spec = parse_spec("count", {"num_jobs": 1, "psd_segments": path}, where)
    with pytest.raises(FanoutError, match=r"^stage deploy: .*no segments"):
        expand(spec, "deploy")


@pytest.mark.parametrize("value", [0, -5])
def test_count_bad_max_duration_is_refused(tmp_path, value):
    # BUG: Count does not validate max_duration the way Segments and Timeslides do.
    # max_duration 0 -> chunk_segments computes (500-1)//0 -> ZeroDivisionError (uncaught);
    # max_duration -5 -> (499)//-5 + 1 = -100 + 1 = -99 steps -> no chunks -> a misleading
    # "no segments" error. The Fetch rule needs step = max_duration > 0 (or -1), so
    # parse_spec should refuse both with the same message Segments gives.
    path = write(tmp_path, *seg_lines(("1240000000", "1240000500", "500")))
    with pytest.raises(FanoutError, match=r"max_duration must be > 0 or -1 \(no split\)"):
        parse_spec("count", {"num_jobs": 1, "psd_segments": path, "max_duration": value}, where)


def test_count_validation():
    with pytest.raises(
        FanoutError,
        match=r"^stages\.s\.foreach\.num_jobs: must be >= 1, got 0",
    ):
        parse_spec("count", {"num_jobs": 0}, where)
    with pytest.raises(FanoutError, match=r"num_signals: must be >= 0, got -1"):
        parse_spec("count", {"num_jobs": 1, "num_signals": -1}, where)
    with pytest.raises(
        FanoutError, match=r"^stages\.s\.foreach\.num_jobs: required key is missing"
    ):
        parse_spec("count", {}, where)


# --- list and product ------------------------------------------------------------------


def test_list_items_in_order():
    spec = parse_spec("list", {"ifo": ["H1", "L1", "V1"]}, where)
    assert isinstance(spec, ListOf)
    assert spec.fields() == ["index", "ifo"]
    assert spec.inputs() == []
    assert expand(spec, "per_ifo") == [
        {"index": "0", "ifo": "H1"},
        {"index": "1", "ifo": "L1"},
        {"index": "2", "ifo": "V1"},
    ]


def test_list_value_formatting():
    # int 3 -> "3"; float 2.0 -> "2" (no trailing .0); 0.25 -> "0.25";
    # bools -> "true"/"false"; a list -> "[1,2.5,a]" (jsonargparse form); str as is.
    values = [3, 2.0, 0.25, True, False, [1, 2.5, "a", True], "text"]
    items = expand(parse_spec("list", {"v": values}, where), "x")
    assert [i["v"] for i in items] == ["3", "2", "0.25", "true", "false", "[1,2.5,a,true]", "text"]
    assert [i["index"] for i in items] == ["0", "1", "2", "3", "4", "5", "6"]


def test_product_last_key_fastest():
    # 2 x 3 = 6 combinations; the last key (b) varies fastest; ids 0..5.
    spec = parse_spec("product", {"a": [1, 2], "b": ["x", "y", "z"]}, where)
    assert isinstance(spec, Product)
    assert spec.fields() == ["index", "a", "b"]
    assert expand(spec, "grid") == [
        {"index": "0", "a": "1", "b": "x"},
        {"index": "1", "a": "1", "b": "y"},
        {"index": "2", "a": "1", "b": "z"},
        {"index": "3", "a": "2", "b": "x"},
        {"index": "4", "a": "2", "b": "y"},
        {"index": "5", "a": "2", "b": "z"},
    ]


def test_product_three_keys():
    # 2 x 1 x 2 = 4 combinations: (lr, bs, aug) with aug fastest, then lr slowest.
    items = expand(
        parse_spec("product", {"lr": [0.001, 1.0], "bs": [256], "aug": [True, False]}, where),
        "grid",
    )
    assert [(i["index"], i["lr"], i["bs"], i["aug"]) for i in items] == [
        ("0", "0.001", "256", "true"),
        ("1", "0.001", "256", "false"),
        ("2", "1", "256", "true"),
        ("3", "1", "256", "false"),
    ]


def test_product_single_key_is_like_list():
    items = expand(parse_spec("product", {"seed": [7, 8]}, where), "x")
    assert items == [{"index": "0", "seed": "7"}, {"index": "1", "seed": "8"}]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("list", {}, "give exactly one name: list of values"),
        ("list", {"a": [1], "b": [2]}, "give exactly one name: list of values"),
        ("list", {"a": []}, "a must be a non-empty list of values"),
        ("list", {"a": 5}, "a must be a non-empty list of values"),
        ("list", {"a-b": [1]}, "'a-b' is not a valid item name"),
        ("product", {}, "give at least one name: list of values"),
        ("product", {"a": [1], "b": []}, "b must be a non-empty list of values"),
        ("product", {"a": [1], "b": "xy"}, "b must be a non-empty list of values"),
        ("product", {"1x": [1]}, "'1x' is not a valid item name"),
    ],
)
def test_list_and_product_validation(name, params, message):
    with pytest.raises(FanoutError, match=message):
        parse_spec(name, params, where)


@pytest.mark.parametrize("name", ["list", "product"])
def test_index_is_a_reserved_name(name):
    # BUG: a value list named "index" replaces the generated numbering:
    # list {index: [5, 5]} gives items [{"index": "5"}, {"index": "5"}] and fields
    # ["index", "index"], so two nodes get the same name (node names are built from
    # item["index"]). Every generator owns "index" (ids from 0 here), so the name must
    # be refused at validation.
    with pytest.raises(FanoutError, match="index"):
        parse_spec(name, {"index": [5, 5]}, where)


# --- shifts_from_tb (section 1.10, get_num_shifts_from_Tb) ------------------------------


def test_shifts_from_tb_aframe_docstring_example():
    # segments (0,10000), (20000,30000); Tb 86400, shift 1, psd 64:
    # dur = 10000 - 64 = 9936 for both.
    # k=1: 2*(9936-1) = 19870 -> 19870
    # k=2: 2*(9936-2) = 19868 -> 39738
    # k=3: 2*(9936-3) = 19866 -> 59604
    # k=4: 2*(9936-4) = 19864 -> 79468
    # k=5: 2*(9936-5) = 19862 -> 99330 >= 86400 -> 5
    assert shifts_from_tb([(0, 10000), (20000, 30000)], 86400, 1, 64) == 5


def test_shifts_from_tb_boundary():
    # Same cumulative livetimes: 79468 is reached exactly at k=4 (loop stops when
    # livetime >= Tb), one second more needs k=5.
    segments = [(0, 10000), (20000, 30000)]
    assert shifts_from_tb(segments, 79468, 1, 64) == 4
    assert shifts_from_tb(segments, 79469, 1, 64) == 5
    # 19870 after k=1 -> Tb 1 and Tb 19870 both need 1 shift.
    assert shifts_from_tb(segments, 1, 1, 64) == 1
    assert shifts_from_tb(segments, 19870, 1, 64) == 1


def test_shifts_from_tb_zero_is_zero_lag_only():
    assert shifts_from_tb([(0, 10000)], 0, 1, 64) == 0


def test_shifts_from_tb_short_segment_stops_counting():
    # (0,100), (200,270) with psd 64, shift 10: dur = 36, 6.
    # k=1: max(0,36-10)=26 + max(0,6-10)=0 = 26 -> 26
    # k=2: 16 + 0 -> 42;  k=3: 6 + 0 -> 48
    assert shifts_from_tb([(0, 100), (200, 270)], 48, 10, 64) == 3
    assert shifts_from_tb([(0, 100), (200, 270)], 42.5, 10, 64) == 3


def test_shifts_from_tb_unreachable_raises():
    # (0,100), psd 64, shift 10: dur 36; livetime 26, 42, 48 after k=1,2,3;
    # k=4 adds max(0, 36-40) = 0, so Tb 49 can never be reached (Aframe loops forever).
    with pytest.raises(FanoutError, match=r"Tb = 49 s cannot be reached: 3 shifts of 10 s"):
        shifts_from_tb([(0, 100)], 49, 10, 64)


def test_shifts_from_tb_no_usable_time_raises():
    # (0,64), psd 64: dur 0, k=1 adds max(0, 0-1) = 0 -> nothing can ever be added.
    with pytest.raises(FanoutError, match="cannot be reached: 0 shifts"):
        shifts_from_tb([(0, 64)], 1, 1, 64)


# --- shifts_from_num_signals (section 1.7, get_num_shifts_from_num_signals) --------------


def test_shifts_from_num_signals_aframe_docstring_example():
    # segments (0,10000), (20000,30000); 2000 signals, waveform 8, spacing 16, shift 1, buffer 8
    # buffer' = 8 + 8//2 = 12; spacing' = 16 + 8 = 24; T = 10000 + 10000 = 20000
    # a = -1/2 = -0.5; b = 20000 - 2*12 - 0.5 = 19975.5; c = -2000*24 = -48000
    # disc = 19975.5^2 - 4*(-0.5)*(-48000) = 399020600.25 - 96000 = 398924600.25
    # sqrt(disc) ~= 19975.5 - 96000/(2*19975.5) ~= 19975.5 - 2.403 = 19973.097
    # N = (-19975.5 + 19973.097) / (2*-0.5) = 2.403 -> ceil 3
    segments = [(0, 10000), (20000, 30000)]
    assert shifts_from_num_signals(segments, 2000, 8, 16, 1, 8) == 3


def test_shifts_from_num_signals_exact_root_and_next():
    # segments (0,50), (100,158); waveform 3, spacing 1, shift 2, buffer 2
    # buffer' = 2 + 3//2 = 3; spacing' = 1 + 3 = 4; T = 50 + 58 = 108
    # a = -2/2 = -1; b = 108 - 2*3 - 2/2 = 101
    # 97 signals: c = -97*4 = -388; disc = 101^2 - 4*(-1)*(-388) = 10201 - 1552 = 8649 = 93^2
    #   N = (-101 + 93) / (2*-1) = 4 exactly -> 4 (not rounded up)
    # 98 signals: c = -392; disc = 10201 - 1568 = 8633, 92.9^2 = 8630.41 < 8633 < 93^2
    #   N = (101 - sqrt)/2 in (4, 4.05) -> ceil 5
    segments = [(0, 50), (100, 158)]
    assert shifts_from_num_signals(segments, 97, 3, 1, 2, 2) == 4
    assert shifts_from_num_signals(segments, 98, 3, 1, 2, 2) == 5


def test_shifts_from_num_signals_zero_signals():
    # c = 0: disc = b^2, N = (-b + b) / (2a) = 0 (b = 101 > 0 as above)
    assert shifts_from_num_signals([(0, 50), (100, 158)], 0, 3, 1, 2, 2) == 0


def test_shifts_from_num_signals_too_many_raises():
    # Same a = -1, b = 101: 1000 signals -> c = -4000; disc = 10201 - 16000 < 0:
    # no real root (Aframe would take a complex square root and crash in ceil).
    with pytest.raises(FanoutError, match="1000 signals cannot be placed"):
        shifts_from_num_signals([(0, 50), (100, 158)], 1000, 3, 1, 2, 2)


# --- Timeslides (sections 1.7 and 1.10) ---------------------------------------------------

# Test background: segments 1240000000/500 s and 1240001000/70 s, max_duration 200:
#   first: (500-1)//200 + 1 = 3 chunks -> 1240000000/200, 1240000200/200, 1240000400/100
#   second: (70-1)//200 + 1 = 1 chunk  -> 1240001000/70
# Chunk lengths 200, 200, 100, 70; last background file (psd_segment) = "1240001000-70".
ROWS = (("1240000000", "1240000500", "500"), ("1240001000", "1240001070", "70"))
CHUNKS = ["1240000000-200", "1240000200-200", "1240000400-100", "1240001000-70"]


def timeslides(path: str, **params) -> Timeslides:
    base = {"segments": path, "max_duration": 200, "shifts": [0, 10], "psd_length": 64}
    spec = parse_spec("timeslides", {**base, **params}, where)
    assert isinstance(spec, Timeslides)
    return spec


TESTING = {"num_signals": 250, "spacing": 6, "buffer": 1, "waveform_duration": 4}


def test_timeslides_num_signals_rule(tmp_path):
    # N (1.7): buffer' = 1 + 4//2 = 3; spacing' = 6 + 4 = 10; T = 200+200+100+70 = 570
    #   a = -10/2 = -5; b = 570 - 2*3 - 10/2 = 559; c = -250*10 = -2500
    #   disc = 559^2 - 4*(-5)*(-2500) = 312481 - 50000 = 262481; 512^2 = 262144 < disc < 513^2
    #   N = (559 - sqrt)/10 in ((559-513)/10, (559-512)/10) = (4.6, 4.7) -> ceil 5
    # shifts j=0..4: [0,10], [0,20], [0,30], [0,40], [0,50] (never zero-lag).
    # keep if len - max(shift) - 64 > 0:
    #   200-s chunks: 136 - 10k > 0 for k = 1..5 (k=5: 86)        -> 5 each
    #   100-s chunk:  36 - 10k: 26, 16, 6 kept; -4 (k=4), -14 dropped -> 3
    #   70-s chunk:   6 - 10k: -4 already at k=1                 -> 0
    # total 5 + 5 + 3 + 0 = 13 items, ids 0..12.
    spec = timeslides(write(tmp_path, *seg_lines(*ROWS)), **TESTING)
    segments = background_segments(spec.segments, 200)
    assert spec.count(segments) == 5
    items = expand(spec, "testing")
    assert len(items) == 13
    assert pairs(items) == [
        *[(CHUNKS[0], f"[0,{s}]") for s in (10, 20, 30, 40, 50)],
        *[(CHUNKS[1], f"[0,{s}]") for s in (10, 20, 30, 40, 50)],
        *[(CHUNKS[2], f"[0,{s}]") for s in (10, 20, 30)],
    ]
    assert [i["index"] for i in items] == [str(n) for n in range(13)]
    assert {i["psd_segment"] for i in items} == {"1240001000-70"}
    # item 10: first on the 100-s chunk; analysis_start = 1240000400 + 64 = 1240000464
    assert items[10] == {
        "index": "10",
        "start": "1240000400",
        "end": "1240000500",
        "analysis_start": "1240000464",
        "segment": "1240000400-100",
        "shifts": "[0,10]",
        "shift_tag": "0-10",
        "psd_segment": "1240001000-70",
    }
    # analysis_start per chunk: 1240000000+64, 1240000200+64
    assert items[0]["analysis_start"] == "1240000064"
    assert items[5]["analysis_start"] == "1240000264"
    assert items[4]["shift_tag"] == "0-50"
    assert sorted(items[0]) == sorted(spec.fields())
    assert spec.inputs() == [spec.segments]


def test_timeslides_tb_rule_with_zero_lag(tmp_path):
    # num_shifts (1.10): dur = len - 64 = 136, 136, 36, 6; shift 10
    #   k=1: 126 + 126 + 26 + 0 = 278 -> 278
    #   k=2: 116 + 116 + 16 + 0 = 248 -> 526
    #   k=3: 106 + 106 +  6 + 0 = 218 -> 744
    #   k=4:  96 +  96 +  0 + 0 = 192 -> 936 >= 800 -> 4
    # per chunk: zero-lag first if len - 64 > 0, then [0,10k] for k=1..4 if len - 10k - 64 > 0
    #   200-s: zero-lag (136 > 0) + k=1..4 (136-40 = 96 > 0)     -> 5 each
    #   100-s: zero-lag (36 > 0) + k=1,2,3 (26,16,6); k=4 -4 drop -> 4
    #   70-s:  zero-lag (6 > 0); k=1 already -4                   -> 1
    # total 5 + 5 + 4 + 1 = 15 items, ids 0..14.
    spec = timeslides(write(tmp_path, *seg_lines(*ROWS)), Tb=800, zero_lag=True)
    assert spec.count(background_segments(spec.segments, 200)) == 4
    items = expand(spec, "infer")
    assert len(items) == 15
    assert pairs(items) == [
        *[(CHUNKS[0], f"[0,{s}]") for s in (0, 10, 20, 30, 40)],
        *[(CHUNKS[1], f"[0,{s}]") for s in (0, 10, 20, 30, 40)],
        *[(CHUNKS[2], f"[0,{s}]") for s in (0, 10, 20, 30)],
        (CHUNKS[3], "[0,0]"),
    ]
    assert [i["index"] for i in items] == [str(n) for n in range(15)]
    # the 70-s chunk keeps only its zero-lag branch: 1240001000 + 64 = 1240001064
    assert items[14] == {
        "index": "14",
        "start": "1240001000",
        "end": "1240001070",
        "analysis_start": "1240001064",
        "segment": "1240001000-70",
        "shifts": "[0,0]",
        "shift_tag": "0-0",
        "psd_segment": "1240001000-70",
    }


def test_timeslides_tb_rule_without_zero_lag(tmp_path):
    # Same 4 shifts, no zero-lag branches: 4 + 4 + 3 + 0 = 11 items.
    spec = timeslides(write(tmp_path, *seg_lines(*ROWS)), Tb=800)
    items = expand(spec, "infer")
    assert pairs(items) == [
        *[(CHUNKS[0], f"[0,{s}]") for s in (10, 20, 30, 40)],
        *[(CHUNKS[1], f"[0,{s}]") for s in (10, 20, 30, 40)],
        *[(CHUNKS[2], f"[0,{s}]") for s in (10, 20, 30)],
    ]
    assert [i["index"] for i in items] == [str(n) for n in range(11)]


def test_timeslides_tb_zero_gives_zero_lag_only(tmp_path):
    # Tb 0 -> 0 shifts; zero-lag kept where len - 64 > 0: 200, 200, 100, 70 all -> 4 items.
    spec = timeslides(write(tmp_path, *seg_lines(*ROWS)), Tb=0, zero_lag=True)
    assert pairs(expand(spec, "infer")) == [(chunk, "[0,0]") for chunk in CHUNKS]


def test_timeslides_zero_lag_needs_more_than_psd_length(tmp_path):
    # 64 s: 64 - 0 - 64 = 0, not > 0 -> dropped; 65 s: 1 > 0 -> kept (id 0).
    path = write(
        tmp_path, *seg_lines(("1240000000", "1240000064", "64"), ("1240001000", "1240001065", "65"))
    )
    items = expand(timeslides(path, max_duration=-1, Tb=0, zero_lag=True), "infer")
    assert [(i["index"], i["segment"], i["shifts"]) for i in items] == [
        ("0", "1240001000-65", "[0,0]")
    ]


def test_timeslides_truncates_fractional_segments(tmp_path):
    # start 1240000000.9, duration 300.7 -> background file 1240000000-300,
    # so start "1240000000", end 1240000000 + 300 = "1240000300",
    # analysis_start 1240000000 + 64 = "1240000064".
    # Tb 0 + zero-lag: 300 - 64 > 0 -> one item.
    path = write(tmp_path, *seg_lines(("1240000000.9", "1240000301.6", "300.7")))
    items = expand(timeslides(path, max_duration=-1, Tb=0, zero_lag=True), "infer")
    assert [(i["start"], i["end"], i["analysis_start"], i["segment"]) for i in items] == [
        ("1240000000", "1240000300", "1240000064", "1240000000-300")
    ]


def test_timeslides_start_index(tmp_path):
    # Tb 0 + zero-lag gives 4 items (above); start_index 3 -> ids 3..6.
    spec = timeslides(write(tmp_path, *seg_lines(*ROWS)), Tb=0, zero_lag=True, start_index=3)
    assert [i["index"] for i in expand(spec, "infer")] == ["3", "4", "5", "6"]


def test_timeslides_empty_segments_file(tmp_path):
    spec = timeslides(write(tmp_path, HEADER), Tb=800, zero_lag=True)
    assert expand(spec, "infer") == []


def test_timeslides_unreachable_tb_names_stage(tmp_path):
    # dur 136, 136, 36, 6 and shift 10: k adds 2*(136-10k) + max(0, 36-10k) + 0 until
    # k=13 (6+6 = 12); k=14 adds 0. Total = 2*(13*136 - 10*(1+...+13)) + (26+16+6)
    # = 2*(1768 - 910) + 48 = 1764 s < 10^6, so Tb 10^6 is unreachable.
    spec = timeslides(write(tmp_path, *seg_lines(*ROWS)), Tb=1_000_000)
    with pytest.raises(FanoutError, match=r"^stage infer: Tb = 1000000 s cannot be reached"):
        expand(spec, "infer")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"Tb": 800, **TESTING}, "give exactly one of Tb or num_signals"),
        ({}, "give exactly one of Tb or num_signals"),
        (
            {"num_signals": 250, "buffer": 1, "waveform_duration": 4},
            "num_signals needs spacing, buffer and waveform_duration",
        ),
        (
            {"num_signals": 250, "spacing": 6, "waveform_duration": 4},
            "num_signals needs spacing, buffer and waveform_duration",
        ),
        ({"Tb": 800, "shifts": [0, 0]}, r"the largest shift must be > 0"),
        ({"Tb": 800, "shifts": [0, -1]}, r"the largest shift must be > 0"),
        ({"Tb": 800, "shifts": []}, r"shifts: must have at least 1 item"),
        ({"Tb": 800, "max_duration": 0}, r"max_duration must be > 0 or -1"),
        ({"Tb": -1}, r"Tb: must be >= 0, got -1"),
        ({"Tb": 800, "spacing": 0, "num_signals": None}, r"spacing: must be > 0, got 0"),
    ],
)
def test_timeslides_validation(tmp_path, params, message):
    base = {"segments": str(tmp_path / "s.txt"), "max_duration": 200, "shifts": [0, 10]}
    base["psd_length"] = 64
    with pytest.raises(FanoutError, match=message):
        parse_spec("timeslides", {**base, **params}, where)


# --- parse_spec messages -------------------------------------------------------------------


def test_parse_spec_unknown_parameter_lists_allowed():
    with pytest.raises(
        FanoutError,
        match=(
            r"^stages\.s\.foreach\.bogus: unknown key; allowed keys: "
            r"num_jobs, num_signals, start_index, psd_segments, max_duration$"
        ),
    ):
        parse_spec("count", {"num_jobs": 1, "bogus": 2}, where)


def test_parse_spec_unknown_segments_parameter():
    with pytest.raises(
        FanoutError,
        match=r"^stages\.s\.foreach\.max_durations: unknown key; did you mean 'max_duration'\?$",
    ):
        parse_spec("segments", {"file": "x", "max_durations": 10}, where)


def test_parse_spec_bad_type_names_key_and_value():
    with pytest.raises(
        FanoutError,
        match=r"^stages\.s\.foreach\.max_duration: must be a number, got 'abc'$",
    ):
        parse_spec("segments", {"file": "x", "max_duration": "abc"}, where)


def test_parse_spec_missing_key():
    with pytest.raises(FanoutError, match=r"^stages\.s\.foreach\.file: required key is missing$"):
        parse_spec("segments", {}, where)
    with pytest.raises(FanoutError, match=r"psd_length: required key is missing"):
        parse_spec("timeslides", {"segments": "x", "shifts": [0, 1], "Tb": 0}, where)


def test_parse_spec_max_duration_message_names_key():
    with pytest.raises(FanoutError, match=r"max_duration must be > 0 or -1 \(no split\), got 0"):
        parse_spec("segments", {"file": "x", "max_duration": 0}, where)


# --- MAX_ITEMS -------------------------------------------------------------------------------


def test_count_over_max_items_refused_at_validation():
    assert MAX_ITEMS == 1_000_000
    # num_jobs le MAX_ITEMS: 1000000 is accepted, 1000001 is not.
    assert parse_spec("count", {"num_jobs": MAX_ITEMS}, where).num_jobs == 1_000_000
    with pytest.raises(
        FanoutError,
        match=r"^stages\.s\.foreach\.num_jobs: must be <= 1000000, got 1000001",
    ):
        parse_spec("count", {"num_jobs": MAX_ITEMS + 1}, where)


def test_expand_refuses_product_over_max_items():
    # 2 x 500001 = 1000002 > 1000000 -> refused; 2 x 500000 = 1000000 -> allowed.
    over = parse_spec("product", {"a": [0, 1], "b": list(range(500_001))}, where)
    with pytest.raises(
        FanoutError,
        match=r"^stage big: fan-out of 1000002 nodes exceeds the limit of 1000000",
    ):
        expand(over, "big")
    at_limit = parse_spec("product", {"a": [0, 1], "b": list(range(500_000))}, where)
    items = expand(at_limit, "big")
    assert len(items) == 1_000_000
    # last combination: a=1 (slowest), b=499999 (fastest), index 999999
    assert items[-1] == {"index": "999999", "a": "1", "b": "499999"}
