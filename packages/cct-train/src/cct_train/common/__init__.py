"""What every stage shares, below all of them: files written whole or not at all (:mod:`.atomic`, the one
writer of every file a user keeps), checkpoints loaded safely (:mod:`.checkpoint`), the ImageNet statistics
(:mod:`.imagenet`), the rich progress bars (:mod:`.progress`), logits fitted to their image's size
(:mod:`.logits`), run folders (:mod:`.rundir`) and limits (:mod:`.limits`). Imports nothing else of cct_train.
"""
