"""Evaluation and inference: the confusion matrix and mIoU, sliding-window / multi-scale prediction,
loading a trained model, predicting folders, plots.
"""
