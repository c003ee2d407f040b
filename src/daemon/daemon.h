/*
 * daemon - `mailwarden serve`: one libevent loop that wires the layers
 * together: the SMTP server side (net/), the queue and its scheduler
 * (queue/), the transports (deliver/) and the reports (report/). No
 * protocol logic lives here.
 *
 * Signals: SIGTERM/SIGINT stop accepting, let in-flight commits finish
 * (their 250 is still sent), send 421 to every other session and exit 0
 * once nothing is in flight. SIGHUP reloads the configuration; a bad file
 * keeps the running one and logs the file:line error.
 *
 *   daemon_run(conf_path, data_dir, dns_zone)   0 on clean exit, -1 on
 *                                               start-up failure
 */
#ifndef MW_DAEMON_DAEMON_H
#define MW_DAEMON_DAEMON_H

int daemon_run(const char *conf_path, const char *data_dir, const char *dns_zone);

#endif
