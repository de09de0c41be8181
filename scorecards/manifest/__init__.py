"""The scorecards part of the organization manifest, one module per section: kpis, objectives (with
key_results), scorecards, data_sources; values.py holds the durations, days, amounts and thresholds they share.
governance.manifest.engine.SECTIONS names the sections by dotted path.
"""
