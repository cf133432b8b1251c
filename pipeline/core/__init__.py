"""What every part shares and nothing else: configs that serialise and hash themselves (`config`), atomic writes
(`atomic`), the error base the command line maps to exit codes (`errors`), file hashes (`hashing`), and the
accelerator TensorFlow uses (`device`).
"""
