# Fuzz targets of the onnx and engine modules. onnx_model: the parser alone; onnx_engine:
# load, optimise, plan and run. Both corpora are small real models from ONNX's node tests plus
# hand-made models with initializers and with external data.
veil_fuzz_target(onnx_model LINK veil_onnx)
if(TARGET veil_engine)
    veil_fuzz_target(onnx_engine LINK veil_engine)
endif()
