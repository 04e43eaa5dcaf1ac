veil_fuzz_target(json LINK veil_json)
