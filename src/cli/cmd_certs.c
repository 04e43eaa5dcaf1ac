/*
 * `veil certs`: a CA with server and client certificates, for one-way and mutual TLS between
 * clients and `veil serve` when no key broker issues the serving certificate.
 */
#include "cli.h"
#include "veil/attest.h"
#include "veil/kbs.h"

#include <getopt.h>
#include <string.h>

int veil_cmd_certs(int argc, char **argv)
{
    static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                         {"host", required_argument, NULL, 'H'},
                                         {"days", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out = "certs";
    const char *hosts[17] = {NULL};
    size_t nh = 0;
    uint64_t days = 365;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'H':
            if (nh == 16)
                return veil_cli_fail("certs", "at most 16 --host names");
            /* The name goes into a certificate: no control characters, spaces or wildcards. */
            if (!veil_attest_host_name_ok(optarg, strlen(optarg)))
                return veil_cli_fail("certs",
                                     "--host #%zu is not a DNS name or IP address (letters, "
                                     "digits, '-' and '.'; no control characters, spaces, ',' "
                                     "or '*')",
                                     nh + 1);
            hosts[nh++] = optarg;
            break;
        case 'd':
            if (!veil_cli_parse_u64(optarg, &days) || days == 0 || days > 3650)
                return veil_cli_fail("certs", "--days must be 1..3650");
            break;
        case 'h':
            printf("usage: veil certs [-o DIR] [--host NAME]... [--days N]\n\n"
                   "Makes DIR/ca.pem, ca.key, server.pem, server.key, client.pem and client.key:\n"
                   "a CA, a server certificate for the --host names (default localhost and\n"
                   "127.0.0.1) and a client certificate, for `veil serve --tls_cert/--tls_key\n"
                   "[--tls_client_ca]` and `veil predict/bench --ca [--cert --key]`.\n");
            return 0;
        default:
            return 2;
        }
    }
    struct veil_errbuf eb = {{0}};
    veil_err rc = veil_kbs_make_certs(out, nh > 0 ? hosts : NULL, (int)days, &eb);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("certs", rc, &eb);
    printf("wrote %s/ca.pem, ca.key, server.pem, server.key, client.pem, client.key\n", out);
    return 0;
}
