"""Reading a run's output folder: performance metrics and the HTML report.

Its one reason to change is how a finished run is judged and shown; it never runs the engine.
"""
