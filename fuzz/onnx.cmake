# Fuzz targets of the onnx and engine modules: onnx_model (the ONNX parser alone), onnx_engine
# (load, optimise, plan and run) and onnx_npy (the .npy tensor reader of `veil run`). The model
# corpora are small real models from ONNX's node tests plus hand-made models with initializers
# and with external data; the .npy corpus is arrays written by NumPy.
veil_fuzz_target(onnx_model LINK veil_onnx)
# onnx_bundle: the reader of the bundles `veil seal` makes of a model and its external data.
veil_fuzz_target(onnx_bundle LINK veil_onnx)
if(TARGET veil_engine)
    veil_fuzz_target(onnx_engine LINK veil_engine)
    veil_fuzz_target(onnx_npy LINK veil_engine)
endif()
