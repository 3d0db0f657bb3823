/* The client commands of the `sluice` binary: push, tail, status, each talking to a running
 * server over its HTTP API (--url, --token, --json). Exit codes (docs/cli.md): 0 done, 1 the
 * server refused the request (a 4xx: bad input, unknown strand) or the input is invalid, 2 usage,
 * 3 the server could not be reached, timed out or failed (5xx): worth retrying; 130 a push
 * interrupted by a signal. */
#ifndef SL_CLI_CLI_H
#define SL_CLI_CLI_H

#include <stdio.h>

enum {
    SL_CLI_OK = 0,
    SL_CLI_REFUSED = 1,
    SL_CLI_USAGE = 2,
    SL_CLI_UNAVAILABLE = 3,
    SL_CLI_INTERRUPTED = 130 /* push stopped by SIGINT/SIGTERM (as a shell reports it) */
};

/* 1 if cmd is one of the client commands. */
int sl_cli_is_command(const char *cmd);
/* Runs client command cmd with its arguments (argv after the command); returns the exit code. */
int sl_cli_main(const char *cmd, int argc, char **argv);
/* The usage lines of the client commands. */
void sl_cli_usage(FILE *f);

#endif
