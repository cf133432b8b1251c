"""Next-frame prediction: a ConvLSTM on Moving MNIST (`moving_mnist` data, `config`, `model`, `budget`, `scores`
against the trivial forecasts, `report`, and `run`, the whole command).
"""
