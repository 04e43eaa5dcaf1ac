/*
 * The `veil` binary: dispatches to one command per file (cmd_*.c) and holds the helpers they
 * share (error printing, number parsing, the terminal progress line).
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct veil_cli_cmd commands[] = {
#define X(n, s) {#n, s, veil_cmd_##n},
    VEIL_CLI_COMMANDS(X)
#undef X
};

static void usage(FILE *f)
{
    fprintf(f, "usage: veil COMMAND [ARGS...]\n\n"
               "Veil serves machine-learning models whose weights stay encrypted outside a\n"
               "trusted execution environment.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'veil COMMAND --help' for a command's options.\n");
}

int veil_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "veil %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int veil_cli_fail_rc(const char *cmd, veil_err rc, const struct veil_errbuf *eb)
{
    return veil_cli_fail(cmd, "%s", veil_errbuf_msg(eb, rc));
}

bool veil_cli_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return false;
    }
    *out = v;
    return true;
}

void veil_cli_progress_init(struct veil_cli_progress *p, const char *label, uint64_t total)
{
    p->label = label;
    p->total = total;
    p->last_ns = 0;
    p->tty = isatty(STDERR_FILENO) != 0;
}

void veil_cli_progress_update(void *arg, uint64_t done)
{
    struct veil_cli_progress *p = arg;
    if (!p->tty)
        return;
    uint64_t now = veil_time_mono_ns();
    if (done < p->total && now - p->last_ns < 100000000ull)
        return;
    p->last_ns = now;
    unsigned pct = p->total ? (unsigned)(done * 100 / p->total) : 100;
    fprintf(stderr, "\r%s %3u%% %llu/%llu MiB", p->label, pct, (unsigned long long)(done >> 20),
            (unsigned long long)(p->total >> 20));
    fflush(stderr);
}

void veil_cli_progress_done(struct veil_cli_progress *p)
{
    if (p->tty && p->last_ns != 0)
        fprintf(stderr, "\r\033[K");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("veil 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "veil: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
