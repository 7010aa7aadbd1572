"""`make bench`: performance figures for BENCHMARKS.md, each a ratio against a baseline measured
in the same run or a count that noise cannot change. See bench/run.py.
"""
