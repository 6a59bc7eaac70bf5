"""The demo's stage programs (aframe_dag/demo, configs/demo.yaml) on tiny inputs."""

from __future__ import annotations

import importlib
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli

from aframe_dag import fanout
from aframe_dag.demo import (
    aggregate,
    common,
    export,
    fetch,
    infer,
    merge,
    query,
    sensitivity,
    train,
)
from aframe_dag.demo import waveforms as waveforms_program
from aframe_dag.quoting import expand_macros, join_continuations, split_arguments

DEMO = REPO / "configs" / "demo.yaml"
# values a node's VARS could set, one per item field the demo uses
ITEM = {
    "index": "0",
    "num_signals": "1000",
    "start": "1262310214",
    "end": "1262310606",
    "duration": "392",
    "segment": "1262310214-392",
    "shifts": "[0,1]",
    "shift_tag": "0-1",
}


# --- the config and the programs agree ------------------------------------------------


def submit_arguments(sub: Path) -> list[str]:
    text = join_continuations(sub.read_text())
    (line,) = [x for x in text.splitlines() if x.startswith("arguments = ")]
    return split_arguments(expand_macros(line.removeprefix("arguments = "), ITEM))


def test_every_stage_command_parses_with_its_program(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, out, err = run_cli("build", str(DEMO), "--run-dir", str(run_dir))
    assert code == 0, err
    assert "infer               decided at run time" in out
    assert "train               1 node, 1 GPU each" in out
    subs = sorted(run_dir.glob("*.sub"))
    assert len(subs) == 11
    for sub in subs:
        text = sub.read_text()
        assert "executable = /usr/bin/env" in text
        assert "getenv = PATH" in text
        argv = submit_arguments(sub)
        if argv[1] == f"{run_dir}/entry/resume.py":  # train resumes from its checkpoint
            assert argv[2:5] == [
                f"--checkpoint={run_dir}/training/last.ckpt",
                f"--since={run_dir}/train.sub",
                "--resume=--ckpt_path={checkpoint}",
            ], argv
            argv = argv[argv.index("--") + 1 :]
        python, flag, module, *args = argv
        # the jobs run with the Python that built the run dir
        assert (python, flag) == (sys.executable, "-m"), sub.name
        program = importlib.import_module(module)
        program.build_parser().parse_args(args)  # exits (SystemExit) on a bad argument


def test_list_arguments_as_the_config_writes_them() -> None:
    assert common.parse_words("[H1,L1]") == ["H1", "L1"]
    assert common.parse_words("H1") == ["H1"]
    assert common.parse_floats("[0,1]") == [0.0, 1.0]
    assert common.parse_floats("[0,2.5e-1]") == [0.0, 0.25]
    for bad in ("[]", "[H1,]", ""):
        with pytest.raises(ValueError):
            common.parse_words(bad)
    with pytest.raises(ValueError):
        common.parse_floats("[0,one]")
    with pytest.raises(SystemExit) as exit_info:
        infer.build_parser().parse_args(["--shifts=[0,x]"])
    assert exit_info.value.code == 2


# --- query and fetch --------------------------------------------------------------------


def test_query_writes_coincident_segments_the_generators_read(tmp_path: Path) -> None:
    path = tmp_path / "segments.txt"
    argv = ["--start=1000", "--end=4000", "--ifos=[H1,L1]", "--min_duration=100"]
    assert query.main([*argv, "--seed=3", f"--output_file={path}"]) == 0
    lines = path.read_text().splitlines()
    assert lines[0] == "# seg\tstart\tstop\tduration"
    segments = common.read_segments(path)
    assert segments
    for (start, stop), line in zip(segments, lines[1:], strict=True):
        assert 1000 <= start < stop <= 4000
        assert stop - start >= 100
        assert int(line.split("\t")[3]) == stop - start
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(segments))
    # the tool's segments generator reads it, and fetch names its files as the items say
    items = fanout.Segments(file=str(path), max_duration=400).items()
    assert sum(float(i["duration"]) for i in items) == sum(b - a for a, b in segments)
    for item in items:
        name = common.background_name("background", float(item["start"]), float(item["end"]))
        assert name == f"background-{item['segment']}.hdf5"
    # seeded: the same segments again, other ones with another seed
    again = tmp_path / "again.txt"
    query.main([*argv, "--seed=3", f"--output_file={again}"])
    assert again.read_bytes() == path.read_bytes()
    query.main([*argv, "--seed=4", f"--output_file={again}"])
    assert again.read_bytes() != path.read_bytes()


def test_fetch_writes_noise_of_the_right_shape_rate_and_spectrum(tmp_path: Path) -> None:
    argv = ["--start=1000", "--end=1064", "--channels=[H1,L1]", "--sample_rate=128", "--seed=1"]
    assert fetch.main([*argv, f"--output_directory={tmp_path}"]) == 0
    data, attrs = common.read_hdf5(tmp_path / "background-1000-64.hdf5")
    assert sorted(data) == ["H1", "L1"]
    assert data["H1"].shape == data["L1"].shape == (64 * 128,)
    assert (attrs["t0"], attrs["sample_rate"]) == (1000, 128)
    assert not np.allclose(data["H1"], data["L1"])
    for ifo in ("H1", "L1"):
        freqs, psd = common.welch(data[ifo].astype(float), 128, 2)
        band = (freqs >= 20) & (freqs <= 60)
        ratio = psd[band] / common.design_asd(freqs[band], ifo) ** 2
        assert 0.8 < np.median(ratio) < 1.2


def test_whitening_gives_unit_noise_and_matched_filter_snr() -> None:
    fs = 256
    noise = common.coloured_noise(128 * fs, fs, "L1", common.rng(0, 1))
    freqs, psd = common.welch(noise[: 16 * fs], fs, 2)
    taps = common.whitening_filter(freqs, psd, fs, 20, 100, 1)
    white = common.whiten(noise, taps)[fs:-fs]
    # white noise of unit variance, restricted to 80 of the 128 Hz
    assert white.var() == pytest.approx(80 / 128, rel=0.08)
    times = np.arange(fs) / fs - 0.95
    plus, _ = common.chirp(times, 0.6, 20, 100, 0.0, 0.0)
    snr = common.optimal_snr(10 * plus, freqs, psd, fs, 20, 100)
    whitened_signal = common.whiten(np.pad(10 * plus, fs), taps)
    assert math.sqrt(np.sum(whitened_signal**2)) == pytest.approx(snr, rel=0.03)


# --- waveforms and merge --------------------------------------------------------------


def test_waveforms_have_the_drawn_snr_and_a_small_delay(tmp_path: Path) -> None:
    path = tmp_path / "waveforms-0.hdf5"
    argv = ["--num_signals=6", "--part=0", "--seed=5", "--ifos=[H1,L1]", "--sample_rate=256"]
    argv += ["--waveform_duration=1", "--highpass=20", "--lowpass=100", "--min_snr=4"]
    assert waveforms_program.main([*argv, "--max_snr=8", f"--output_file={path}"]) == 0
    data, attrs = common.read_hdf5(path)
    assert data["H1"].shape == data["L1"].shape == (6, 256)
    assert attrs["ifos"] == "H1,L1"
    assert np.all((data["snr"] >= 4) & (data["snr"] <= 8))
    freqs = np.fft.rfftfreq(1024, 1 / 256)
    for k in range(6):
        snr2 = sum(
            common.optimal_snr(
                data[ifo][k].astype(float), freqs, common.design_asd(freqs, ifo) ** 2, 256, 20, 100
            )
            ** 2
            for ifo in ("H1", "L1")
        )
        assert math.sqrt(snr2) == pytest.approx(data["snr"][k], rel=1e-3)
        # the signal ends right_pad before the end and arrives within 10 ms in L1
        assert np.all(data["H1"][k][-10:] == 0)
        delay = common.delay("L1", ["H1", "L1"], data["theta"][k], data["phi"][k])
        assert abs(delay) <= common.MAX_DELAY


def test_merge_orders_parts_by_index_and_splits_train_from_test(tmp_path: Path) -> None:
    for index in (10, 2):
        common.write_hdf5(
            tmp_path / f"waveforms-{index}.hdf5",
            {"H1": np.full((2, 4), index), "snr": np.full(2, index)},
            {"sample_rate": 4},
        )
    (tmp_path / "waveforms-x.hdf5").touch()  # not a part
    assert [p.name for p in merge.parts(tmp_path)] == ["waveforms-2.hdf5", "waveforms-10.hdf5"]
    out = tmp_path / "out"
    argv = [f"--input_dir={tmp_path}", f"--training_file={out}/train.hdf5"]
    assert merge.main([*argv, f"--testing_file={out}/test.hdf5", "--test_fraction=0.25"]) == 0
    trained, attrs = common.read_hdf5(out / "train.hdf5")
    tested, _ = common.read_hdf5(out / "test.hdf5")
    assert list(trained["snr"]) == [2, 2, 10] and list(tested["snr"]) == [10]
    assert trained["H1"].shape == (3, 4) and attrs["sample_rate"] == 4


# --- training and export ----------------------------------------------------------------


def test_network_beats_chance_on_a_separable_toy_set() -> None:
    generator = common.rng(7)
    x = np.concatenate([generator.normal(-1, 1, (200, 3)), generator.normal(1, 1, (200, 3))])
    y = np.concatenate([np.zeros(200), np.ones(200)])
    weights, history = train.fit(
        x, y, hidden=4, steps=200, learning_rate=0.05, decay=0.0, generator=generator, report=100
    )
    assert train.accuracy(weights, x, y) > 0.9  # the Bayes rate here is 0.96
    assert [point["step"] for point in history] == [1, 100, 200]
    assert history[-1]["loss"] < history[0]["loss"]


def test_gradients_match_finite_differences() -> None:
    generator = common.rng(1)
    x, y = generator.normal(size=(20, 3)), (generator.random(20) > 0.5).astype(float)
    weights, _ = train.fit(
        x, y, hidden=2, steps=1, learning_rate=0.1, decay=0.01, generator=generator
    )
    _, grads = train.loss_and_grads(weights, x, y, 0.01)
    for name in weights:
        for index in np.ndindex(weights[name].shape):
            moved = {k: v.copy() for k, v in weights.items()}
            moved[name][index] += 1e-6
            up, _ = train.loss_and_grads(moved, x, y, 0.01)
            moved[name][index] -= 2e-6
            down, _ = train.loss_and_grads(moved, x, y, 0.01)
            assert (up - down) / 2e-6 == pytest.approx(grads[name][index], abs=1e-6)


def test_the_features_separate_chirps_from_noise() -> None:
    fs, generator = 256, common.rng(3)
    noise = common.coloured_noise(64 * fs, fs, "H1", generator)
    stream = np.stack([noise, common.coloured_noise(64 * fs, fs, "L1", generator)])
    freqs, psds = common.estimate_psds(stream, fs, 16, 2)
    times = np.arange(fs) / fs - 0.95
    plus, _ = common.chirp(times, 0.5, 20, 100, 0.0, 0.0)
    signal = np.stack([plus, -plus]) * 12 / common.optimal_snr(plus, freqs, psds[0], fs, 20, 100)
    starts = np.arange(fs, 60 * fs, 2 * fs)
    injected = common.inject(stream, np.repeat(signal[None], len(starts), 0), starts)
    white = common.whiten_stream(injected, freqs, psds, fs, 20, 100, 1)
    clean = common.whiten_stream(stream, freqs, psds, fs, 20, 100, 1)
    loud = common.features(np.stack([white[:, s : s + fs] for s in starts]), fs, 20, 100)
    quiet = common.features(np.stack([clean[:, s : s + fs] for s in starts]), fs, 20, 100)
    assert loud.shape == (len(starts), common.num_features(2))
    # the signal raises the band powers and the coherent H1-L1 correlation
    assert np.mean(loud[:, :-1].sum(axis=1) > quiet[:, :-1].sum(axis=1)) > 0.95
    assert np.median(loud[:, -1]) > 2 * np.median(quiet[:, -1])


def test_export_folds_the_scaling_and_writes_a_repository(tmp_path: Path) -> None:
    generator = common.rng(2)
    trained = {
        "W1": generator.normal(size=(3, 4)),
        "b1": generator.normal(size=4),
        "W2": generator.normal(size=4),
        "b2": np.array([0.5]),
        "mean": np.array([1.0, -2.0, 3.0]),
        "std": np.array([0.5, 2.0, 1.5]),
        "config": json.dumps({"ifos": ["H1", "L1"], "sample_rate": 256}),
    }
    common.save_npz(tmp_path / "model.npz", trained)
    repo = tmp_path / "repo"
    assert (
        export.main([f"--weights={tmp_path / 'model.npz'}", f"--repository_directory={repo}"]) == 0
    )
    config = json.loads((repo / "aframe-demo" / "config.json").read_text())
    assert (config["version"], config["ifos"], config["input"]["features"]) == (1, ["H1", "L1"], 3)
    weights, loaded = infer.load_model(repo, "aframe-demo", -1)
    assert loaded == config
    x = generator.normal(size=(5, 3))
    expected = common.network(trained, (x - trained["mean"]) / trained["std"])
    assert np.allclose(common.network(weights, x), expected, atol=1e-4)
    # equal arrays, equal bytes: no dates in the archive
    common.save_npz(tmp_path / "again.npz", trained)
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "model.npz").read_bytes()


def test_train_export_and_infer_on_a_tiny_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ifos = "--ifos=[H1,L1]"
    background_dir = tmp_path / "bg"
    for start, end in ((1000, 1064), (2000, 2020)):  # the short file holds no signal slot
        argv = [f"--start={start}", f"--end={end}", "--channels=[H1,L1]", "--sample_rate=256"]
        fetch.main([*argv, f"--output_directory={background_dir}"])
    signals = tmp_path / "waveforms.hdf5"
    argv = ["--num_signals=60", ifos, "--sample_rate=256", "--waveform_duration=1", "--min_snr=15"]
    waveforms_program.main([*argv, "--highpass=20", "--lowpass=100", f"--output_file={signals}"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234")
    argv = [f"--background_dir={background_dir}", f"--waveforms_file={signals}", ifos]
    argv += ["--kernel_length=1", "--psd_length=8", "--highpass=20", "--lowpass=100"]
    assert train.main([*argv, "--steps=100", f"--outdir={tmp_path / 'training'}"]) == 0
    log = (tmp_path / "training" / "train.log").read_text().splitlines()
    assert log[0] == "CUDA_VISIBLE_DEVICES=GPU-1234 (the demo trains on the CPU)"
    assert log[1].startswith("60 signal and 180 noise windows of 1 s")
    assert json.loads(log[-1])["validation_accuracy"] > 0.8  # loud signals
    repo = tmp_path / "repo"
    export.main(
        [f"--weights={tmp_path / 'training' / 'model.npz'}", f"--repository_directory={repo}"]
    )
    out = tmp_path / "results" / "1000-64_shifts-0-2"
    argv = [f"--background_file={background_dir / 'background-1000-64.hdf5'}", ifos]
    argv += [f"--injection_file={signals}", f"--model_repository={repo}", "--shifts=[0,2]"]
    assert infer.main([*argv, "--psd_length=8", f"--outdir={out}"]) == 0
    background, attrs = common.read_hdf5(out / "background.hdf5")
    foreground, _ = common.read_hdf5(out / "foreground.hdf5")
    # 64 s less the shift, the PSD burn-in and half the whitening filter
    assert attrs["livetime"] == 64 - 2 - 8 - 0.5
    assert list(attrs["shifts"]) == [0, 2] and attrs["segment"] == "1000-64"
    # one event per 1 s cluster window after the first window's end
    assert len(background["time"]) == 53
    assert np.all(np.diff(background["time"]) > 0)
    assert len(foreground["time"]) == 12  # every 4 s, from 2 s past the burn-in
    assert np.all(foreground["snr"] > 10)
    assert np.median(foreground["detection_statistic"]) > np.max(background["detection_statistic"])


# --- inference ------------------------------------------------------------------------


def test_slide_shifts_each_ifo_and_keeps_common_time() -> None:
    stream = np.stack([np.arange(20.0), 100 + np.arange(20.0)])
    slid = infer.slide(stream, [0, 1.5], sample_rate=2)
    assert slid.shape == (2, 17)
    assert slid[0, 0] == 0 and slid[1, 0] == 103  # L1 starts 3 samples (1.5 s) later
    assert slid[0, -1] == 16 and slid[1, -1] == 119
    assert np.array_equal(infer.slide(stream, [0, 0], 2), stream)
    with pytest.raises(SystemExit):
        infer.slide(stream, [0, -1], 2)


def test_cluster_keeps_the_loudest_per_window() -> None:
    times = np.array([10.0, 10.25, 10.5, 10.75, 11.0, 11.25, 12.5])
    scores = np.array([1.0, 3.0, 2.0, 0.0, -1.0, -2.0, 5.0])
    kept_times, kept = infer.cluster(times, scores, start=10, window=1)
    assert list(kept_times) == [10.25, 11.0, 12.5] and list(kept) == [3.0, -1.0, 5.0]


def test_injection_times_are_spaced_and_inside() -> None:
    times = infer.injection_times(100, 140, 4, 0.5, common.rng(0))
    assert len(times) == 10
    assert np.all(np.diff(times) >= 3) and times[0] >= 100 and times[-1] <= 140


# --- aggregate and sensitivity --------------------------------------------------------


def write_node(root: Path, name: str, scores: list[float], livetime: float) -> None:
    for file in ("background.hdf5", "foreground.hdf5"):
        data = {"time": np.arange(len(scores), dtype=float), "detection_statistic": scores}
        if file == "foreground.hdf5":
            data["snr"] = np.full(len(scores), 8.0)
        common.write_hdf5(root / name / file, data, {"livetime": livetime})


def test_aggregate_separates_zero_lag_by_directory_name(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    write_node(tmp, "1000-200_shifts-0-0", [9.0], 180)
    write_node(tmp, "1000-200_shifts-0-1", [1.0, 2.0], 179)
    write_node(tmp, "1000-200_shifts-0-2", [3.0], 178)
    write_node(tmp, "2000-150_shifts-0-1", [4.0], 120)
    assert aggregate.parse_tag("1000-200_shifts-0-1e-05") == ((1000, 200), (0, 1e-05))
    assert aggregate.main([f"--input_dir={tmp}", f"--output_dir={tmp_path}"]) == 0
    background, attrs = common.read_hdf5(tmp_path / "background.hdf5")
    zero, zero_attrs = common.read_hdf5(tmp_path / "0lag.hdf5")
    foreground, _ = common.read_hdf5(tmp_path / "foreground.hdf5")
    assert list(background["detection_statistic"]) == [1.0, 2.0, 3.0, 4.0]
    assert background["shift"].tolist() == [[0, 1], [0, 1], [0, 2], [0, 1]]
    assert attrs["livetime"] == 179 + 178 + 120
    assert list(zero["detection_statistic"]) == [9.0] and zero_attrs["livetime"] == 180
    assert len(foreground["snr"]) == 5


def test_far_threshold_from_the_background_livetime() -> None:
    background = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])
    two_hours = 7200.0
    # 1 per hour over 2 hours: 2 louder events allowed, so the 3rd loudest is the threshold
    threshold = sensitivity.far_threshold(background, two_hours, 1 / 3600)
    assert threshold == 3.0
    assert sensitivity.far_of(threshold, background, two_hours) == 2 / two_hours
    # less than one allowed: only louder than the loudest; all allowed: any event
    assert sensitivity.far_threshold(background, two_hours, 0.1 / 3600) == 5.0
    assert sensitivity.far_threshold(background, two_hours, 10 / 3600) == -math.inf


def test_efficiency_bins_and_intervals() -> None:
    snr = np.array([1.0, 3.0, 5.0, 6.0, 7.0, 9.0])
    detected = np.array([False, False, True, False, True, True])
    rows = sensitivity.efficiency(snr, detected, [0, 4, 8, 12])
    assert rows == [(0, 4, 0, 2), (4, 8, 2, 3), (8, 12, 1, 1)]
    assert sensitivity.snr_at(0.5, rows) == pytest.approx(2 + 0.5 / (2 / 3) * 4)
    low, high = sensitivity.wilson(2, 3)
    assert low < 2 / 3 < high
    assert sensitivity.wilson(0, 5)[0] == 0.0 and sensitivity.wilson(5, 5)[1] == 1.0


# matplotlib < 3.11 calls pyparsing names that pyparsing >= 3.3 deprecates
@pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")
def test_sensitivity_writes_the_plot_and_summary(tmp_path: Path) -> None:
    generator = common.rng(4)
    background = {"time": np.arange(3600.0), "detection_statistic": generator.normal(size=3600)}
    common.write_hdf5(tmp_path / "bg.hdf5", background, {"livetime": 3600.0})
    snr = generator.uniform(2, 20, 300)
    foreground = {
        "time": np.arange(300.0),
        "snr": snr,
        "detection_statistic": snr / 3 + generator.normal(size=300),
    }
    common.write_hdf5(tmp_path / "fg.hdf5", foreground, {"livetime": 3600.0})
    argv = [f"--background={tmp_path / 'bg.hdf5'}", f"--foreground={tmp_path / 'fg.hdf5'}"]
    argv += [f"--output_dir={tmp_path / 'plots'}", f"--summary={tmp_path / 'summary.txt'}"]
    assert sensitivity.main([*argv, "--far=2"]) == 0
    assert (tmp_path / "plots" / "sensitivity.png").read_bytes().startswith(b"\x89PNG")
    summary = (tmp_path / "summary.txt").read_text()
    assert "background livetime: 3600 s (1.00 h)" in summary
    assert "false-alarm rate: 2 per hour" in summary
    assert "50% efficiency at SNR" in summary
