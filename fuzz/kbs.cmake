veil_fuzz_target(kbs_http LINK veil_kbs)
