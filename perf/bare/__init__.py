"""The benchmark's ceiling: a bare Django project answering one small JSON body (perf/ratios.py)."""
