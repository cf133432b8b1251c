"""Benchmarks: stage one's speed (`stage_one`, its measurements in `parts`), the store's costs (`store`), and the
temporal benchmark (`temporal`, with its clips from `temporal_tasks`).
"""
