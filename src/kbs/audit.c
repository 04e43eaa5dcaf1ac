/*
 * The audit log: one JSON object per line, appended with O_APPEND in a single write and made
 * durable with fdatasync before the decision it records takes effect. The file is opened
 * append-only and never rewritten by the broker.
 */
#include "kbs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

veil_err veil__kbs_audit_open(struct veil__kbs_audit *a, const char *path, struct veil_errbuf *eb)
{
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0)
        return veil_errf(eb, VEIL_E_IO, "%s: %s", path, strerror(errno));
    pthread_mutex_init(&a->lock, NULL);
    return VEIL_OK;
}

void veil__kbs_audit_close(struct veil__kbs_audit *a)
{
    if (a->fd >= 0) {
        close(a->fd);
        pthread_mutex_destroy(&a->lock);
    }
    a->fd = -1;
}

veil_err veil__kbs_audit_write(struct veil__kbs_audit *a, struct veil_span line)
{
    struct veil_buf b;
    veil_buf_init(&b, line.len + 2);
    veil_err rc = veil_buf_append(&b, line.p, line.len);
    if (rc == VEIL_OK)
        rc = veil_buf_append_u8(&b, '\n');
    if (rc != VEIL_OK) {
        veil_buf_release(&b);
        return rc;
    }
    /* One write per line keeps lines whole with several writers. The fdatasync runs outside the
     * lock: it returns once everything written before it is durable, so concurrent decisions
     * share disk flushes (group commit) instead of queueing behind each other. */
    pthread_mutex_lock(&a->lock);
    ssize_t w = write(a->fd, b.p, b.len);
    pthread_mutex_unlock(&a->lock);
    if (w == (ssize_t)b.len && fdatasync(a->fd) != 0)
        w = -1;
    veil_buf_release(&b);
    return w == (ssize_t)line.len + 1 ? VEIL_OK : VEIL_E_IO;
}
