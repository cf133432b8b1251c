"""Reports: a training run's page (`classification`, `summary`, `examples`, `strips`), the runs index (`index`,
`sortable`), and the shared rendering (`pages` for HTML and Markdown, `figures` for plots on given axes).
"""
