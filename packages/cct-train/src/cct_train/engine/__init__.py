"""Training: the trainer (setup, fit, the step), the optimizer and schedules (shared with CAM training),
signals, trackers, the precision and thread choices from the hardware (:mod:`.hardware`). Checkpoints and
progress bars are in :mod:`cct_train.common`.
"""
