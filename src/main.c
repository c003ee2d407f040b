/*
 * mailwarden - a mail transfer agent built for moving e-mail securely.
 * main.c only dispatches to the subcommands in cli/. Run under the name
 * "sendmail" (a symlink), it is `mailwarden send` with sendmail's options.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} subcommands[] = {
    { "serve", cli_serve, "run the SMTP daemon in the foreground" },
    { "spf", cli_spf, "evaluate SPF for an IP, sender and HELO name" },
    { "check", cli_check, "diagnostics: DNS lookups with their DNSSEC state" },
    { "dkim", cli_dkim, "DKIM keys and signing: keygen, sign" },
    { "verify", cli_verify, "check a message: prints an Authentication-Results header" },
    { "dmarc", cli_dmarc, "DMARC aggregate reports: report --dry-run prints the pending ones" },
    { "user", cli_user, "the user database: add, passwd, del, list" },
    { "queue", cli_queue, "the running daemon's queue: list, show, flush, retry, hold, release, remove" },
    { "send", cli_send, "submit a message over TLS (also installed as sendmail)" },
};

static void usage(FILE *f)
{
    fputs("usage: mailwarden COMMAND [ARGS]\n\ncommands:\n", f);
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        fprintf(f, "  %-8s %s\n", subcommands[i].name, subcommands[i].help);
}

int main(int argc, char **argv)
{
    const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
    if (argc > 0 && strcmp(base != NULL ? base + 1 : argv[0], "sendmail") == 0)
        return cli_send(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return EX_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        puts("mailwarden 0.1.0");
        return EX_OK;
    }
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mailwarden: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EX_USAGE;
}
