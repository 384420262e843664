"""The action-to-video world model: codecs, transformer, ControlNet, LoRA, sampler, save/load."""
