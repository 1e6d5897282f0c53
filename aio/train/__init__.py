"""Training: the trainer, checkpoints, the resumable sampler and distributed set-up.

Import the sub-modules you need (``aio.train.trainer``, ``aio.train.checkpoint``); nothing heavy here.
"""
