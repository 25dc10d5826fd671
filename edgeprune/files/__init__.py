"""Model files in and out of the core: the GGUF format, header, reader and input, the ONNX file check, checkpoints, spec_of."""
