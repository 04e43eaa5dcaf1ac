# Fuzz targets of the onnx module (the corpus is small real models from ONNX's node tests).
veil_fuzz_target(onnx_model LINK veil_onnx)
