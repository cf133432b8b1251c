"""Stage one: from a manifest to a feature store. `run.extract_manifest` is the entry point; `decode` and
`decoder_pool` read videos in isolated, time-limited processes; `backbones` and `runtimes` embed frames;
`embedding` batches them into shards; `cluster` does the same on dask; `config` holds `FeatureConfig`.
"""
