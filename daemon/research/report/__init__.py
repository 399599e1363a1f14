"""HTML reports of a replay or a walk-forward: one self-contained file, figures inlined as
base64 PNGs.

Built from the output folder only (plus, optionally, the closes of its universe for the
buy-and-hold benchmark); needs no JavaScript and no network to view.

The rooms: `document` (the two reports and the reading of their folders), `figures`, `tables`,
and `folder` (the report of an output folder, with its benchmark, as `tradingd report` writes it).
"""
