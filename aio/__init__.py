"""aio: an experiment and ablation suite for all-in-one image restoration.

Importing ``aio`` is cheap on purpose: import the sub-package you need (``aio.models``, ``aio.data``, ...).
"""

__version__ = "0.1.0"
