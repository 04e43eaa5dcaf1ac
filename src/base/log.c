/*
 * Logging: printf-checked macros deliver one formatted line to a pluggable sink.
 * The sink and level are process globals set before threads start (STYLE rule 30); the
 * default sink writes "veil: LEVEL: message" lines to stderr with one write(2) each.
 */
#include "veil/base.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static veil_log_fn g_sink;
static void *g_sink_ud;
static _Atomic int g_level = VEIL_LOG_LEVEL_INFO;

static const char *level_name(enum veil_log_level level)
{
    switch (level) {
    case VEIL_LOG_LEVEL_ERR:
        return "error";
    case VEIL_LOG_LEVEL_WARN:
        return "warning";
    case VEIL_LOG_LEVEL_INFO:
        return "info";
    case VEIL_LOG_LEVEL_DEBUG:
        return "debug";
    }
    return "log";
}

static void default_sink(void *ud, enum veil_log_level level, const char *file, int line,
                         const char *func, const char *msg)
{
    (void)ud;
    char out[1200];
    int n;
    if (veil_log_get_level() >= VEIL_LOG_LEVEL_DEBUG)
        n = snprintf(out, sizeof(out), "veil: %s: %s (%s:%d %s)\n", level_name(level), msg, file,
                     line, func);
    else
        n = snprintf(out, sizeof(out), "veil: %s: %s\n", level_name(level), msg);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1;
    ssize_t w = write(STDERR_FILENO, out, len);
    (void)w;
}

void veil_log_set_sink(veil_log_fn fn, void *ud)
{
    g_sink = fn;
    g_sink_ud = ud;
}

void veil_log_set_level(enum veil_log_level level)
{
    atomic_store(&g_level, (int)level);
}

enum veil_log_level veil_log_get_level(void)
{
    return (enum veil_log_level)atomic_load(&g_level);
}

void veil_log_write(enum veil_log_level level, const char *file, int line, const char *func,
                    const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (g_sink != NULL)
        g_sink(g_sink_ud, level, file, line, func, msg);
    else
        default_sink(NULL, level, file, line, func, msg);
}
