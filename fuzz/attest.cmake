# Fuzz targets of the attest module; each replays fuzz/corpus/<name>/ as a ctest test.
veil_fuzz_target(attest_quote LINK veil_attest)
veil_fuzz_target(attest_report LINK veil_attest)
veil_fuzz_target(attest_certext LINK veil_attest)
veil_fuzz_target(attest_policy LINK veil_attest)
