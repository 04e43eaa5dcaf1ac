/*
 * Error codes, their messages, and the caller-owned errbuf helpers.
 * The code space is the X-macro VEIL_ERR_MAP in veil/base.h; nothing here allocates.
 */
#include "veil/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *veil_err_str(veil_err rc)
{
    switch (rc) {
#define X(name, value, msg)                                                                        \
    case name:                                                                                     \
        return msg;
        VEIL_ERR_MAP(X)
#undef X
    }
    return "unknown error";
}

const char *veil_err_name(veil_err rc)
{
    switch (rc) {
#define X(name, value, msg)                                                                        \
    case name:                                                                                     \
        return #name;
        VEIL_ERR_MAP(X)
#undef X
    }
    return "VEIL_E_UNKNOWN";
}

veil_err veil_errf(struct veil_errbuf *eb, veil_err rc, const char *fmt, ...)
{
    if (eb != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
        va_end(ap);
    }
    return rc;
}

veil_err veil_errf_keep(struct veil_errbuf *eb, veil_err rc, const char *fmt, ...)
{
    if (eb != NULL && eb->msg[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
        va_end(ap);
    }
    return rc;
}

veil_err veil_err_prefix(struct veil_errbuf *eb, veil_err rc, const char *fmt, ...)
{
    if (eb == NULL)
        return rc;
    char prefix[VEIL_LIMIT_ERRMSG];
    char old[VEIL_LIMIT_ERRMSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, eb->msg, sizeof(old));
    old[sizeof(old) - 1] = '\0';
    char joined[2 * VEIL_LIMIT_ERRMSG + 4];
    snprintf(joined, sizeof(joined), "%s: %s", prefix, old[0] == '\0' ? veil_err_str(rc) : old);
    memcpy(eb->msg, joined, sizeof(eb->msg) - 1);
    eb->msg[sizeof(eb->msg) - 1] = '\0';
    return rc;
}

const char *veil_errbuf_msg(const struct veil_errbuf *eb, veil_err rc)
{
    if (eb == NULL || eb->msg[0] == '\0')
        return veil_err_str(rc);
    return eb->msg;
}

void veil__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "veil: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
