"""The serving benchmark, by job: servers and their wire formats, the load generators, the peers'
own environments, the models served, the figures' targets and the report.

`python bench/serve.py` (bench/serve.py) is the entry point; see its docstring for what is
measured and how.
"""
