/*
 * `veil keygen`: makes a 256-bit model key and writes it to a key file readable only by its
 * owner, refusing to overwrite an existing file.
 */
#include "cli.h"
#include "veil/attest.h"
#include "veil/crypto.h"

#include <getopt.h>
#include <string.h>

static void help(FILE *f)
{
    fprintf(f, "usage: veil keygen [-o FILE] [--id ID]\n"
               "       veil keygen --sim -o FILE\n\n"
               "Makes a random 256-bit model key and writes it to FILE (default model.key)\n"
               "with mode 0600. An existing file is never overwritten.\n"
               "With --sim, makes a simulation attestation key pair instead: FILE (private,\n"
               "mode 0600) for `veil serve --tee sim`, and FILE.pub.pem for the key broker's\n"
               "--sim-key. Sim evidence is for machines without a TEE and proves nothing.\n\n"
               "  -o, --output FILE  where to write the key (default: model.key)\n"
               "      --id ID        the key ID recorded in sealed files (default: random)\n"
               "      --sim          make a sim attestation key pair\n"
               "  -h, --help         this help\n");
}

static int sim_keygen(const char *out)
{
    struct veil_buf priv, pub;
    struct veil_errbuf eb = {{0}};
    char pubpath[4096];
    veil_buf_init_secret(&priv, 65536);
    veil_buf_init(&pub, 65536);
    snprintf(pubpath, sizeof(pubpath), "%s.pub.pem", out);
    veil_err rc = veil_attest_sim_keygen(&priv, &pub, &eb);
    if (rc == VEIL_OK)
        rc =
            veil_file_write_atomic(pubpath, veil_buf_span(&pub), 0644, VEIL_ATOMIC_NO_REPLACE, &eb);
    if (rc == VEIL_OK)
        rc = veil_file_write_atomic(out, veil_buf_span(&priv), 0600, VEIL_ATOMIC_NO_REPLACE, &eb);
    veil_buf_release(&priv);
    veil_buf_release(&pub);
    if (rc != VEIL_OK)
        return veil_cli_fail_rc("keygen", rc, &eb);
    printf("wrote sim attestation key %s (mode 0600) and %s\n"
           "sim evidence is INSECURE: it proves nothing about hardware\n",
           out, pubpath);
    return 0;
}

int veil_cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"sim", no_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL, *id = NULL;
    bool sim = false;
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
        case 's':
            sim = true;
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
    if (sim)
        return sim_keygen(out != NULL ? out : "sim.key");
    if (out == NULL)
        out = "model.key";
    struct veil_model_key *key = NULL;
    veil_err rc = veil_model_key_generate(id, &key, &eb);
    if (rc == VEIL_OK)
        rc = veil_model_key_save(key, out, &eb);
    if (rc == VEIL_OK)
        printf("wrote model key %s to %s (mode 0600)\n", key->id, out);
    veil_model_key_free(key);
    return rc == VEIL_OK ? 0 : veil_cli_fail_rc("keygen", rc, &eb);
}
