"""Fixed rates and limits shared by the gateway's signal core."""

from __future__ import annotations

#: The gateway works internally at this rate (Hz): the MIT-BIH rate the model was trained at.
MODEL_FS_HZ: float = 360.0

#: Device sampling rates the gateway accepts (Hz), inclusive.
MIN_DEVICE_FS_HZ: float = 100.0
MAX_DEVICE_FS_HZ: float = 1000.0
