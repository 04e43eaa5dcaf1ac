/*
 * cli.h: the command table of the `veil` binary and helpers shared by the commands.
 * Each command lives in cmd_<name>.c and exports one entry point.
 */
#ifndef VEIL_CLI_H
#define VEIL_CLI_H

#include "veil/base.h"

#include <stdio.h>

struct veil_cli_cmd {
    const char *name;
    const char *summary;
    /* argv[0] is the command name; returns the process exit status. */
    int (*run)(int argc, char **argv);
};

/* Prints "veil NAME: message" to stderr and returns exit status 1. */
int veil_cli_fail(const char *cmd, const char *fmt, ...) VEIL_PRINTF(2, 3);
/* As veil_cli_fail, with the errbuf's message or rc's description. */
int veil_cli_fail_rc(const char *cmd, veil_err rc, const struct veil_errbuf *eb);
/* Parses a decimal unsigned integer that must fill all of s. */
bool veil_cli_parse_u64(const char *s, uint64_t *out);

/*
 * A progress line on stderr when it is a terminal (nothing otherwise): "label  42% 215/512 MiB".
 * Call update as often as you like; it redraws at most ten times a second.
 */
struct veil_cli_progress {
    const char *label;
    uint64_t total;
    uint64_t last_ns;
    bool tty;
};
void veil_cli_progress_init(struct veil_cli_progress *p, const char *label, uint64_t total);
void veil_cli_progress_update(void *p, uint64_t done);
void veil_cli_progress_done(struct veil_cli_progress *p);

#define VEIL_CLI_COMMANDS(X)                                                                       \
    X(keygen, "make a model key file")                                                             \
    X(seal, "encrypt a model file into the sealed format")                                         \
    X(unseal, "decrypt a sealed model file")                                                       \
    X(inspect, "print a sealed file's header (no key needed)")                                     \
    X(certs, "make a CA with server and client certificates for TLS")                              \
    X(kbs, "the key broker: attested key release and serving certificates")                        \
    X(evidence, "verify attestation evidence offline")                                             \
    X(measure, "print the values a policy must list for this build")                               \
    X(serve, "serve models over TF Serving's gRPC and REST APIs")                                  \
    X(predict, "send one prediction request to a model server")                                    \
    X(bench, "load-test a model server and report throughput and latency")                         \
    X(run, "run a model file on inputs locally, no server")

#define X(name, summary) int veil_cmd_##name(int argc, char **argv);
VEIL_CLI_COMMANDS(X)
#undef X

#endif
