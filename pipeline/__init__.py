"""Two-stage feature-cache pipeline for video classification.

Stage one (`pipeline.extract`) decodes the videos of a manifest with decord and stores frozen CNN
embeddings in an HDF5 feature store (`pipeline.store`); stage two trains sequence classifiers on
that store. `python -m pipeline --help` lists the commands.
"""

__version__ = "0.1.0"
