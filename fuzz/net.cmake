# Fuzz targets of the net module.
veil_fuzz_target(net_grpc_frame LINK veil_net)
