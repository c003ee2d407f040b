/*
 * tmpdir.h - a fresh directory under /tmp for one unit test, and its
 * removal. Include after <cmocka.h>.
 */
#ifndef MW_TESTS_TMPDIR_H
#define MW_TESTS_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

/* dir (n bytes) becomes /tmp/<tag>.XXXXXX, created. */
static inline void tmpdir_make(char *dir, size_t n, const char *tag)
{
    snprintf(dir, n, "/tmp/%s.XXXXXX", tag);
    assert_non_null(mkdtemp(dir));
}

static inline void tmpdir_remove(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

#endif
