"""Training: the trainer (setup, fit, the step), checkpoints and export, the optimizer and schedules
(shared with CAM training), signals, trackers, progress, the machine (precision, threads).
"""
