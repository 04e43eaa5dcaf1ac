/*
 * `veil measure`: prints the values an attestation policy must list for this build. For the
 * sim TEE that is the SHA-256 of the running binary (or of --binary FILE) and the SVN the
 * binary claims; for SGX, TDX and SEV-SNP the measurement covers the enclave or VM image this
 * binary is packed into, which the binary cannot compute from inside, so the command says
 * which tool reports it (docs/attest/measure.md).
 */
#include "cli.h"
#include "veil/attest.h"

#include <getopt.h>
#include <string.h>

/* The security version this build claims in sim evidence; raised when a fix must be forced. */
#define VEIL_BUILD_SVN 1

static void help(FILE *f)
{
    fprintf(f, "usage: veil measure [--binary FILE] [--json]\n\n"
               "Prints the values a policy must list for this build: the sim measurement\n"
               "(SHA-256 of the veil binary) and SVN, a policy entry to paste, and where the\n"
               "SGX, TDX and SEV-SNP measurements come from.\n\n"
               "  --binary FILE  measure FILE instead of the running binary\n"
               "  --json         print one JSON object\n");
}

int veil_cmd_measure(int argc, char **argv)
{
    static const struct option opts[] = {{"binary", required_argument, NULL, 'b'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *binary = "/proc/self/exe";
    bool json = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            binary = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            help(stdout);
            return 0;
        default:
            help(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        help(stderr);
        return 2;
    }
    uint8_t m[32];
    char hex[65];
    struct veil_errbuf eb = {{0}};
    veil_err rc = veil_attest_sim_measure_file(binary, m, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("measure", rc, &eb);
    veil_hex_encode(m, 32, hex);
    if (json) {
        printf(
            "{\"sim\":{\"measurement\":\"%s\",\"svn\":%d},"
            "\"policy_entry\":{\"name\":\"veil-sim\",\"tee\":\"sim\",\"measurement\":[\"%s\"],"
            "\"min_svn\":%d,\"keys\":[]},"
            "\"sgx\":\"MRENCLAVE/MRSIGNER of the Gramine enclave: gramine-sgx-sigstruct-view\","
            "\"tdx\":\"MRTD/RTMRs of the TD image: computed by the VM build (e.g. tdx-measure)\","
            "\"snp\":\"MEASUREMENT of the guest launch: computed by the VM build (e.g. "
            "snp-digest, sev-snp-measure)\"}\n",
            hex, VEIL_BUILD_SVN, hex, VEIL_BUILD_SVN);
        return 0;
    }
    printf("sim measurement      %s\n", hex);
    printf("sim svn              %d\n", VEIL_BUILD_SVN);
    printf("policy entry (sim, INSECURE, development only):\n"
           "  {\"name\": \"veil-sim\", \"tee\": \"sim\", \"measurement\": [\"%s\"],\n"
           "   \"min_svn\": %d, \"keys\": []}\n",
           hex, VEIL_BUILD_SVN);
    printf("sgx                  MRENCLAVE and MRSIGNER cover the whole Gramine enclave\n"
           "                     (binary, manifest, trusted files): read them with\n"
           "                     gramine-sgx-sigstruct-view on the signed .sig file\n");
    printf("tdx                  MRTD and RTMR0-2 cover the TD firmware, kernel and command\n"
           "                     line: computed by the VM image build, or read from a quote\n"
           "                     with 'veil evidence verify'\n");
    printf(
        "snp                  MEASUREMENT covers the guest's launch image: computed by the\n"
        "                     VM image build, or read from a report with 'veil evidence verify'\n");
    return 0;
}
