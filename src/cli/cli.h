/*
 * cli - the subcommands of the mailwarden binary. Each takes the argument
 * vector after the subcommand name and returns the process exit status
 * (sysexits.h values for failures).
 */
#ifndef MW_CLI_CLI_H
#define MW_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/buf.h"

struct event_base;
struct dns_resolver;
struct dns_unbound_opts;

int cli_serve(int argc, char **argv);
int cli_spf(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_dkim(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_user(int argc, char **argv);
int cli_send(int argc, char **argv);
int cli_dmarc(int argc, char **argv);
int cli_queue(int argc, char **argv);

/* The resolver for a DNS-using command: the zone file if zone is given,
 * else libunbound with o on a new *base (NULL for a zone), with an answer
 * cache if asked. EX_OK, or EX_CONFIG/EX_OSERR after printing why. */
int cli_open_resolver(const char *prog, const char *zone, const struct dns_unbound_opts *o,
                      bool cache, struct event_base **base, struct dns_resolver *r);
/* A message from in into b, bare LF turned into CRLF; -1 on a read error
 * or when it grows past max bytes. */
int cli_read_message(FILE *in, size_t max, struct buf *b);

/* Called once per message (CRLF text); returns EX_OK or an exit status,
 * having printed why. */
typedef int (*cli_message_fn)(void *arg, const struct buf *msg);
/* Without files (nfiles == 0) the message on stdin (unreadable or larger
 * than max: EX_DATAERR); otherwise each file in turn, "==> FILE <==" on
 * stdout before its output. A file that cannot be read (or is larger than
 * max) is reported as "mailwarden PROG: FILE: why" and skipped. Returns
 * EX_NOINPUT if a file was skipped, else the first status other than EX_OK
 * that fn returned, else EX_OK. */
int cli_each_message(const char *prog, char *const *files, size_t nfiles, size_t max,
                     cli_message_fn fn, void *arg);

#endif
