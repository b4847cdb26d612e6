"""What every stage shares, below all of them: checkpoints written atomically and loaded safely
(:mod:`.checkpoint`), the rich progress bars (:mod:`.progress`) and logits fitted to their image's size
(:mod:`.logits`). Imports nothing else of cct_train.
"""
