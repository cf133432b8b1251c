"""Which device TensorFlow computes on, named once in the log: on a GPU machine a user wants to see it is used.

Called by each stage where it first needs TensorFlow (stage one's backbone, training, the ConvLSTM,
prediction), not by the command line up front, so that a command refused on its input stays fast.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


def device_line(gpus: list, details=lambda gpu: {}) -> tuple[int, str]:
    """The log level and line that name TensorFlow's device, from its list of physical GPUs.

    `details(gpu)` is `tf.config.experimental.get_device_details` (device_name, compute_capability).
    One INFO line on a GPU machine; on a CPU a DEBUG line, since that is what a user expects there.
    """
    if not gpus:
        return logging.DEBUG, "TensorFlow runs on the CPU (no GPU visible)"
    named = []
    for gpu in gpus:
        info = details(gpu) or {}
        model = info.get("device_name") or "unknown model"
        if info.get("compute_capability"):
            model += f", compute capability {'.'.join(map(str, info['compute_capability']))}"
        named.append(f"{gpu.name.removeprefix('/physical_device:')} ({model})")
    return logging.INFO, f"TensorFlow uses {len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: {'; '.join(named)}"


@functools.cache
def log_tensorflow_device() -> None:
    """Log `device_line` for this machine, once per process; imports TensorFlow."""
    import tensorflow as tf

    level, line = device_line(tf.config.list_physical_devices("GPU"), tf.config.experimental.get_device_details)
    log.log(level, "%s", line)
