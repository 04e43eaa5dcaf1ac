#include "harness.h"
#include "veil/kbs.h"

TEST(request_head)
{
    const char *req = "POST /kbs/v1/provision HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      "Connection: close\r\n\r\nhello";
    struct veil_kbs_http_head h;
    ASSERT_OK(veil_kbs_http_parse(veil_span_from_str(req), true, &h));
    ASSERT_TRUE(veil_span_eq_str(h.method, "POST"));
    ASSERT_TRUE(veil_span_eq_str(h.path, "/kbs/v1/provision"));
    ASSERT_EQ_U64(h.content_length, 5);
    ASSERT_TRUE(h.close);
    ASSERT_EQ_U64(h.head_len, strlen(req) - 5);
}

TEST(response_head)
{
    struct veil_kbs_http_head h;
    ASSERT_OK(veil_kbs_http_parse(veil_span_from_str("HTTP/1.1 403 Forbidden\r\n\r\n"), false, &h));
    ASSERT_EQ_U64(h.status, 403);
    ASSERT_OK(veil_kbs_http_parse(veil_span_from_str("HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n"),
                                  false, &h));
    ASSERT_EQ_U64(h.status, 200);
}

TEST(incomplete_and_malformed)
{
    struct veil_kbs_http_head h;
    ASSERT_ERR(veil_kbs_http_parse(veil_span_from_str("GET / HTTP/1.1\r\nHost: x\r\n"), true, &h),
               VEIL_E_INCOMPLETE);
    static const char *bad[] = {
        "GET / HTTP/1.0\r\n\r\n",
        "GET nopath HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\n\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (veil_kbs_http_parse(veil_span_from_str(bad[i]), true, &h) != VEIL_E_FORMAT)
            HFAIL("accepted malformed request #%zu", i);
    ASSERT_ERR(veil_kbs_http_parse(veil_span_from_str("HTTP/1.1 20 X\r\n\r\n"), false, &h),
               VEIL_E_FORMAT);
    ASSERT_ERR(
        veil_kbs_http_parse(
            veil_span_from_str("GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"), true, &h),
        VEIL_E_LIMIT);
}

TEST(head_size_cap)
{
    size_t n = VEIL_LIMIT_KBS_HEAD + 100;
    char *big = veil_malloc(n + 1);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    memset(big + 19, 'a', n - 19);
    big[n] = 0;
    struct veil_kbs_http_head h;
    ASSERT_ERR(veil_kbs_http_parse(veil_span_make(big, n), true, &h), VEIL_E_LIMIT);
    veil_free(big);
}

RUN_TESTS()
