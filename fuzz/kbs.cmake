veil_fuzz_target(kbs_http LINK veil_kbs)
veil_fuzz_target(kbs_challenge LINK veil_kbs)
