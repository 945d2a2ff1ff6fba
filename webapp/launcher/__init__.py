"""The local launcher: prepares models and folders, starts nginx and both apps, stops them.

`python -m webapp.launcher run` is what `make run` calls; tests use `Stack` directly to
start the same processes on free ports.
"""
