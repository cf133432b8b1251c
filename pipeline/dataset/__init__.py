"""Datasets as manifests: reading and checking them (`manifest`, with `csv_text` for UTF-8 and CSV with line numbers),
writing them from common layouts (`importers`), and the synthetic demo clips (`demo`).
"""
