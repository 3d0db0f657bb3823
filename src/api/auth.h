/* API tokens and scopes (docs/security.md): a YAML file of tokens, each a name, scopes (read,
 * write, admin; each implies the ones before it) and a secret given as its SHA-256 (hex) or in
 * clear (typically ${file:/path}); only the SHA-256 is kept. A request's bearer token is hashed
 * and compared with every token's hash in constant time. Any thread once loaded. */
#ifndef SL_API_AUTH_H
#define SL_API_AUTH_H

#include "core/buf.h"

enum { SL_SCOPE_NONE = 0, SL_SCOPE_READ = 1, SL_SCOPE_WRITE = 2, SL_SCOPE_ADMIN = 3 };

struct sl_auth;

/* Loads the tokens file. 0, or the number of problems, each a line of msgs
 * ("FILE:LINE:COL: tokens[1].scopes: ..."). */
int sl_auth_load(const char *path, struct sl_auth **out, struct sl_buf *msgs);
void sl_auth_free(struct sl_auth *a);

/* Takes one request from the rate limit of token name: 0 if it may go on, else the seconds until
 * it may (a token without rate_limit always may). Any thread. */
double sl_auth_take(struct sl_auth *a, const char *name);

/* The scope of the token in an Authorization header ("Bearer <token>"): SL_SCOPE_*, or -1 if
 * the header is absent, malformed or names no token. *name gets the token's name (static while
 * a lives) when one matched. */
int sl_auth_scope(const struct sl_auth *a, const char *header, const char **name);

#endif
