/*
 * `veil keygen`: makes a 256-bit model key and writes it to a key file readable only by its
 * owner, refusing to overwrite an existing file.
 */
#include "cli.h"
#include "veil/crypto.h"

#include <getopt.h>
#include <string.h>

static void help(FILE *f)
{
    fprintf(f, "usage: veil keygen [-o FILE] [--id ID]\n\n"
               "Makes a random 256-bit model key and writes it to FILE (default model.key)\n"
               "with mode 0600. An existing file is never overwritten.\n\n"
               "  -o, --output FILE  where to write the key (default: model.key)\n"
               "      --id ID        the key ID recorded in sealed files (default: random)\n"
               "  -h, --help         this help\n");
}

int veil_cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out = "model.key", *id = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'i':
            id = optarg;
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
    struct veil_errbuf eb = {{0}};
    struct veil_model_key *key = NULL;
    veil_err rc = veil_model_key_generate(id, &key, &eb);
    if (rc == VEIL_OK)
        rc = veil_model_key_save(key, out, &eb);
    if (rc == VEIL_OK)
        printf("wrote model key %s to %s (mode 0600)\n", key->id, out);
    veil_model_key_free(key);
    return rc == VEIL_OK ? 0 : veil_cli_fail_rc("keygen", rc, &eb);
}
