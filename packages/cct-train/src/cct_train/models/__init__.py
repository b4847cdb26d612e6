"""The model: encoders (timm / smp backbones), the PSP head and sub-pixel decoders, `CCTModel`, the
multi-domain model, backbone weights, and the one factory from a config (`build_model`).
"""
