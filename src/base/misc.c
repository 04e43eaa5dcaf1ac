/*
 * Small helpers: CPU count, hex, and the system's cryptographic random source.
 */
#include "veil/base.h"

#include <openssl/rand.h>
#include <unistd.h>

unsigned veil_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1u : (unsigned)n;
}

void veil_hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int veil_hex_digit(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

veil_err veil_hex_decode(struct veil_span s, uint8_t *out, size_t n)
{
    if (n > SIZE_MAX / 2 || s.len != 2 * n)
        return VEIL_E_FORMAT;
    for (size_t i = 0; i < n; i++) {
        int hi = veil_hex_digit(s.p[2 * i]), lo = veil_hex_digit(s.p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return VEIL_E_FORMAT;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return VEIL_OK;
}

veil_err veil_random_bytes(void *p, size_t n)
{
    if (n > INT32_MAX)
        return VEIL_E_INVALID;
    return RAND_bytes(p, (int)n) == 1 ? VEIL_OK : VEIL_E_CRYPTO;
}
