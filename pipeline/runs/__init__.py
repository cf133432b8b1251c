"""The run-directory format, owned here as `pipeline.store` owns the store: what a run holds (`layout`), the folders
the tool may write into and how a run is replaced whole (`folders`), and its files read with checks (`files`).
"""
