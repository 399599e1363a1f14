"""The live driver: Alpaca's streams (or the simulated broker) through the engine, for months.

Its one reason to change is how a running daemon meets the outside world: its lifecycle, how
bars become slices, recovery after a restart, and an operator's controls.
"""
