# Fuzz targets of the serve module: the TensorProto decoder, the REST JSON decoder and URL
# grammar, the KServe v2 request parser, the warmup file readers, the attestation requests, and
# the text-format config parsers.
veil_fuzz_target(serve_tensor LINK veil_serve)
veil_fuzz_target(serve_json LINK veil_serve)
veil_fuzz_target(serve_kserve LINK veil_serve)
veil_fuzz_target(serve_warmup LINK veil_serve)
veil_fuzz_target(serve_config LINK veil_serve)
veil_fuzz_target(serve_evidence LINK veil_serve)
