/* The outbound policy (docs/security.md): which addresses outbound connectors may connect to.
 * Link-local (169.254.0.0/16, fe80::/10: cloud metadata services) is always denied unless
 * allowed; deny_private also denies RFC 1918, loopback, 100.64.0.0/10, fc00::/7 and 0.0.0.0/8;
 * deny and allow are comma-separated addresses or CIDRs, allow winning. Set once at start,
 * before any worker; read by any thread after. */
#ifndef SL_CORE_NETPOLICY_H
#define SL_CORE_NETPOLICY_H

#include <stddef.h>

/* 0, or -1 with err naming the option and the bad entry. */
int sl_netpolicy_set(int deny_private, const char *allow, const char *deny, char *err,
                     size_t errlen);
/* 1 if the address (family AF_INET or AF_INET6, its bytes) is denied, why saying which rule. */
int sl_netpolicy_denied(int family, const unsigned char *addr, char *why, size_t whylen);
/* The same for a literal address in a URL's host ("10.1.2.3", "[fe80::1]"); 0 for a name (it is
 * checked when it resolves, at connect time). */
int sl_netpolicy_denied_host(const char *host, char *why, size_t whylen);

/* For clients that resolve names themselves (libpq, libmariadb): the first address of host (a
 * name or a literal) the policy allows, as text into out, to connect to instead of the name (so
 * it cannot resolve to something else in between). 0, or -1 with why: every address is denied
 * (the first rule that denied one), or the name does not resolve. */
int sl_netpolicy_pick(const char *host, char *out, size_t n, char *why, size_t whylen);

#endif
