/*
 * Clocks and RFC 3339 timestamps. Parsing is strict: a timestamp is
 * YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), with ranges checked.
 */
#include "veil/base.h"

#include <stdio.h>
#include <time.h>

uint64_t veil_time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t veil_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

static veil_err digits(struct veil_span *s, size_t n, int *out)
{
    struct veil_span d;
    if (veil_span_get_bytes(s, n, &d) != VEIL_OK)
        return VEIL_E_FORMAT;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (d.p[i] < '0' || d.p[i] > '9')
            return VEIL_E_FORMAT;
        v = v * 10 + (d.p[i] - '0');
    }
    *out = v;
    return VEIL_OK;
}

static veil_err expect(struct veil_span *s, const char *set)
{
    uint8_t c;
    if (veil_span_get_u8(s, &c) != VEIL_OK)
        return VEIL_E_FORMAT;
    for (; *set; set++)
        if ((uint8_t)*set == c)
            return VEIL_OK;
    return VEIL_E_FORMAT;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

veil_err veil_time_parse_rfc3339(struct veil_span s, int64_t *out)
{
    int y, mo, d, h, mi, sec;
    if (digits(&s, 4, &y) || expect(&s, "-") || digits(&s, 2, &mo) || expect(&s, "-") ||
        digits(&s, 2, &d) || expect(&s, "Tt ") || digits(&s, 2, &h) || expect(&s, ":") ||
        digits(&s, 2, &mi) || expect(&s, ":") || digits(&s, 2, &sec))
        return VEIL_E_FORMAT;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return VEIL_E_FORMAT;
    if (s.len > 0 && s.p[0] == '.') {
        size_t n = 1;
        while (n < s.len && s.p[n] >= '0' && s.p[n] <= '9')
            n++;
        if (veil_span_skip(&s, n) != VEIL_OK)
            return VEIL_E_FORMAT;
        n--;
        if (n == 0)
            return VEIL_E_FORMAT;
    }
    int64_t offset = 0;
    uint8_t z;
    if (veil_span_get_u8(&s, &z) != VEIL_OK)
        return VEIL_E_FORMAT;
    if (z == '+' || z == '-') {
        int oh, om;
        if (digits(&s, 2, &oh) || expect(&s, ":") || digits(&s, 2, &om) || oh > 23 || om > 59)
            return VEIL_E_FORMAT;
        offset = (int64_t)oh * 3600 + om * 60;
        if (z == '-')
            offset = -offset;
    } else if (z != 'Z' && z != 'z') {
        return VEIL_E_FORMAT;
    }
    if (veil_span_expect_end(&s) != VEIL_OK)
        return VEIL_E_FORMAT;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    return VEIL_OK;
}

void veil_time_format_rfc3339(int64_t t, char out[21])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
