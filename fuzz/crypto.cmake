veil_fuzz_target(sealed_header LINK veil_crypto)
veil_fuzz_target(sealed_file LINK veil_crypto)
