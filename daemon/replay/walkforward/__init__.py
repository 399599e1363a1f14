"""Walk-forward optimization: choose in a training window, prove it in the window after.

The trading sessions of the data are split into rolling folds, `[train | test]`, each rolled
forward by the test length, so the test windows tile the data after the first training window.
In each training window every point of a parameter grid (strategy params, composer settings: any
config key path) is replayed, and the point with the best objective (Sharpe by default, max is
better, ties to the earlier grid point) is then replayed over the test window. The test windows'
equity curves are chained into one out-of-sample curve.

Every replay is a job of plain picklable data run through `daemon.replay.driver.replay`, the same
event path as any replay: in-process (one worker), in a process pool, or on a Dask distributed
cluster. A job's result depends only on its arguments, so every mode gives the same figures.

The rooms: `folds` (the folds, the sessions they are cut from, the grid), `jobs` (a replay as
plain data, and the runners: serial, process pool, Dask), `driver` (`walk_forward`: choose,
test, join) and `outputs` (the results, the joined curve and its figures, the files).
"""
