"""Stage two: sequence classifiers on a feature store. `train.train` is the entry point; `sequences` and `splits`
turn the store into fixed-length sequences and splits; `models`, `model_files` and `fine_tune` build, save and
reload the networks and baselines; `metrics` and `intervals` score them.
"""
