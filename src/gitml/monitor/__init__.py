"""Monitoring: drift, data quality and performance of production data against the reference.

The flow of one `gitml monitor` run (DESIGN.md §11):

    sources    read the current data (a batch file, prediction-log files between --since and
               --until, a DVC-tracked path) as chunks of one frame shape
    reference  find the model that served it and that model's training split (the registry,
               a file, or the working tree before any release)
    sketch     profile the reference (bins, categories) and count each current chunk on it;
               counts merge, so a stream of chunks (or Dask partitions) gives the same counts
    drift      per-column tests and effect sizes from the counts (pure: values in, values out)
    alarms     the correction across every test of the run (Holm, Bonferroni, BH) and the
               minimum effect; data-quality findings against the signature
    performance  late labels joined by request id: metrics per version and window, with
               intervals, against the promotion floors
    estimate   performance before labels arrive: the calibrator fitted at evaluate time on the
               held-out split, applied to current scores (CBPE)
    run        the orchestration above, giving a `MonitorResult` (result.py)
    report / html / history   monitor.md, monitor.html (self-contained) and the history row
    simulate   batches with known shifts (`gitml simulate`), for calibration tests and demos
    retrain    a labelled batch appended to the training data, retrained on a branch
"""
