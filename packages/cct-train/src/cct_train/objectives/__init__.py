"""The CCT objective: L = Ls + w_u Lu + w_w Lw (:mod:`.cct`) and the fused path of the K auxiliary
decoders' consistency loss (:mod:`.fused`). Imports `cct_losses` and nothing of cct_train above it.
"""
