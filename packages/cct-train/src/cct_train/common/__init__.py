"""What every stage shares, below all of them: checkpoints written atomically and loaded safely
(:mod:`.checkpoint`) and the rich progress bars (:mod:`.progress`). Imports nothing else of cct_train.
"""
