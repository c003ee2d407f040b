/*
 * serve - `mailwarden serve [-c FILE] [--data-dir DIR] [--check-config]`.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "core/buf.h"
#include "daemon/daemon.h"

static void usage(FILE *f)
{
    fputs("usage: mailwarden serve [-c FILE] [--data-dir DIR] [--dns-zone FILE] [--check-config]\n"
          "       mailwarden serve --print-default-config\n",
          f);
}

int cli_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "data-dir", required_argument, NULL, 'd' },
        { "dns-zone", required_argument, NULL, 'z' },
        { "check-config", no_argument, NULL, 'k' },
        { "print-default-config", no_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *conf_path = NULL, *data_dir = NULL, *dns_zone = NULL;
    int check = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': conf_path = optarg; break;
        case 'd': data_dir = optarg; break;
        case 'z': dns_zone = optarg; break;
        case 'k': check = 1; break;
        case 'p': fputs(conf_default_text(), stdout); return EX_OK;
        case 'h': usage(stdout); return EX_OK;
        default: usage(stderr); return EX_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EX_USAGE;
    }
    if (check) {
        struct mw_config *c = NULL;
        struct buf err;
        buf_init(&err);
        int r = conf_load(conf_path, &c, &err);
        fputs(buf_ptr(&err), stderr);
        buf_free(&err);
        if (r < 0)
            return EX_CONFIG;
        printf("%s: configuration ok\n", conf_path ? conf_path : "(default)");
        conf_unref(c);
        return EX_OK;
    }
    return daemon_run(conf_path, data_dir, dns_zone) == 0 ? EX_OK : EX_CONFIG;
}
