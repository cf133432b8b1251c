"""`predict`: the one package that uses both stages: a trained run classifies new videos, embedded with the feature
config the run was trained on (`run`), whole or in sliding windows (`videos`), written as CSV, JSON and PNG (`outputs`).
"""
