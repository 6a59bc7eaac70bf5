"""A miniature Aframe-shaped analysis that runs on a laptop (configs/demo.yaml).

Each stage is a small program, `python -m aframe_dag.demo.STAGE --help`:

    query        simulated science segments (segwizard file)
    fetch        two-detector coloured Gaussian noise for one piece of a segment
    waveforms    chirp-like signals projected onto the detectors, one part
    merge        the parts into training and testing waveform files
    train        a small numpy network on whitened windows (runs on the CPU)
    export       the trained network as a model repository
    infer        score one background file at one timeslide, and injections into it
    aggregate    gather the per-node events, zero-lag apart
    sensitivity  detection efficiency at a fixed false-alarm rate: plot and summary

The tool itself (aframe_dag.*) never imports this package; it needs numpy, h5py
and matplotlib (`pip install aframe-dag[demo]`).
"""
