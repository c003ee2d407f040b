/*
 * client_common.h - what the benchmark clients share: a monotonic clock
 * and an error report that stops after MAX_ERRORS_SHOWN lines. Define
 * CLIENT_NAME ("idle_client") and CLIENT_ITEM ("connection") first.
 */
#ifndef BENCH_CLIENT_COMMON_H
#define BENCH_CLIENT_COMMON_H

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#define MAX_ERRORS_SHOWN 10

static int n_errors_shown;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report_error(long i, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report_error(long i, const char *fmt, ...)
{
    if (n_errors_shown >= MAX_ERRORS_SHOWN)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, CLIENT_NAME ": " CLIENT_ITEM " %ld: %s\n", i, msg);
    if (++n_errors_shown == MAX_ERRORS_SHOWN)
        fprintf(stderr, CLIENT_NAME ": (further errors not shown)\n");
}

#endif
