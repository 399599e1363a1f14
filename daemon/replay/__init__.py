"""Replays of history through the engine: as fast as possible, paced, walked forward, audited.

Its one reason to change is how recorded bars (files, or a journal's inputs) are fed to the core.
"""
