"""The process: settings, the engine (the synchronous core), the drivers, logging, the CLI.

Only `daemon` knows every package and wires them.
"""
