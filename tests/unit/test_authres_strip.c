/*
 * authres_strip_ours(): only Authentication-Results fields in the header
 * that carry our authserv-id go, whatever their case, comments or folding;
 * others, and anything in the body, stay byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "msg/authres.h"

static void check(const char *in, const char *expect, size_t dropped)
{
    struct buf out;
    buf_init(&out);
    size_t n = authres_strip_ours(in, strlen(in), "mx.test", &out);
    assert_int_equal(n, dropped);
    if (dropped == 0)
        assert_int_equal(buf_size(&out), 0);
    else
        assert_string_equal(buf_ptr(&out), expect);
    buf_free(&out);
}

static void test_strip(void **state)
{
    check("Authentication-Results: mx.test; dkim=pass\r\nFrom: a@b\r\n\r\nbody\r\n",
          "From: a@b\r\n\r\nbody\r\n", 1);
    check("authentication-results:MX.TEST;spf=pass\r\nFrom: a@b\r\n\r\nx\r\n",
          "From: a@b\r\n\r\nx\r\n", 1);
    check("Authentication-Results: (comment (nested)) mx.test\r\n\t(fold); dmarc=pass\r\n"
          "Subject: s\r\n\r\n",
          "Subject: s\r\n\r\n", 1);
    check("A: 1\r\nAuthentication-Results: mx.test 1; none\r\nB: 2\r\n"
          "Authentication-Results: mx.test; x=y\r\n\r\n",
          "A: 1\r\nB: 2\r\n\r\n", 2);
    /* Not ours: kept (nothing returned). */
    check("Authentication-Results: mx.test.evil; dkim=pass\r\n\r\n", NULL, 0);
    check("Authentication-Results: other.example; mx.test=1\r\n\r\n", NULL, 0);
    check("X-Authentication-Results: mx.test; dkim=pass\r\n\r\n", NULL, 0);
    /* In the body: kept. */
    check("From: a@b\r\n\r\nAuthentication-Results: mx.test; dkim=pass\r\n", NULL, 0);
    /* No body separator at all. */
    check("Authentication-Results: mx.test; a=b\r\nFrom: a@b\r\n", "From: a@b\r\n", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_strip) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
