"""A model's shape: the spec, its prunable units, quant presets and the GGUF type mix, arch presets, the model built from a spec."""
