"""ipywidgets panels for interactive reduction (issue "JupyterHub for PIs").

Widgets only edit the steps' parameter objects and call the same functions as
the batch pipeline, so any interactive session can be replayed in batch.
"""
