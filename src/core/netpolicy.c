#include "core/netpolicy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};

#define MAX_CIDRS 64
static struct {
    struct cidr allow[MAX_CIDRS], deny[MAX_CIDRS];
    size_t nallow, ndeny;
} g_pol;

static int parse_cidr(const char *s, struct cidr *c)
{
    char buf[80];
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash++ = 0;
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        c->bits = 32;
    } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        c->bits = 128;
    } else {
        return -1;
    }
    if (slash) {
        char *end;
        long b = strtol(slash, &end, 10);
        if (*end || b < 0 || b > c->bits)
            return -1;
        c->bits = (int)b;
    }
    return 0;
}

static int in_cidr(const struct cidr *c, int family, const unsigned char *a)
{
    if (c->family != family)
        return 0;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, (size_t)full))
        return 0;
    return !rest || ((c->addr[full] ^ a[full]) & (0xff << (8 - rest))) == 0;
}

static int add_list(const char *list, struct cidr *v, size_t *n, const char *opt, char *err,
                    size_t errlen)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", list ? list : "");
    for (char *save, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (*n == MAX_CIDRS || parse_cidr(t, &v[*n]) < 0) {
            snprintf(err, errlen, "%s: '%.60s' is not an address or CIDR (at most %d)", opt, t,
                     MAX_CIDRS);
            return -1;
        }
        (*n)++;
    }
    return 0;
}

int sl_netpolicy_set(int deny_private, const char *allow, const char *deny, char *err,
                     size_t errlen)
{
    memset(&g_pol, 0, sizeof(g_pol));
    if (add_list(allow, g_pol.allow, &g_pol.nallow, "outbound_allow", err, errlen) < 0 ||
        add_list(deny, g_pol.deny, &g_pol.ndeny, "outbound_deny", err, errlen) < 0)
        return -1;
    char builtin[200] = "169.254.0.0/16,fe80::/10";
    if (deny_private)
        strcat(builtin, ",10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,100.64.0.0/10,"
                        "::1/128,fc00::/7,0.0.0.0/8");
    return add_list(builtin, g_pol.deny, &g_pol.ndeny, "outbound_deny", err, errlen);
}

int sl_netpolicy_denied(int family, const unsigned char *a, char *why, size_t n)
{
    for (size_t i = 0; i < g_pol.nallow; i++)
        if (in_cidr(&g_pol.allow[i], family, a))
            return 0;
    for (size_t i = 0; i < g_pol.ndeny; i++)
        if (in_cidr(&g_pol.deny[i], family, a)) {
            char ip[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN];
            inet_ntop(family, a, ip, sizeof(ip));
            inet_ntop(g_pol.deny[i].family, g_pol.deny[i].addr, net, sizeof(net));
            snprintf(why, n, "%s is denied by the outbound policy (%s/%d)", ip, net,
                     g_pol.deny[i].bits);
            return 1;
        }
    return 0;
}

int sl_netpolicy_denied_host(const char *host, char *why, size_t whylen)
{
    unsigned char a[16];
    char h[80];
    size_t l = strlen(host);
    if (l >= sizeof(h))
        return 0;
    memcpy(h, host, l + 1);
    if (h[0] == '[' && l > 2 && h[l - 1] == ']') { /* [v6] */
        memmove(h, h + 1, l - 2);
        h[l - 2] = 0;
    }
    if (inet_pton(AF_INET, h, a) == 1)
        return sl_netpolicy_denied(AF_INET, a, why, whylen);
    if (inet_pton(AF_INET6, h, a) == 1)
        return sl_netpolicy_denied(AF_INET6, a, why, whylen);
    return 0;
}

int sl_netpolicy_pick(const char *host, char *out, size_t n, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo(host, NULL, &hints, &res);
    if (e) {
        snprintf(why, whylen, "could not translate host name \"%s\": %s", host, gai_strerror(e));
        return -1;
    }
    int rc = -1;
    char first[200] = "";
    for (struct addrinfo *a = res; a && rc < 0; a = a->ai_next) {
        const void *bytes =
            a->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)(void *)a->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)(void *)a->ai_addr)->sin6_addr;
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
            continue;
        char w[200];
        if (sl_netpolicy_denied(a->ai_family, bytes, w, sizeof(w))) {
            if (!first[0])
                snprintf(first, sizeof(first), "%s", w);
            continue;
        }
        if (inet_ntop(a->ai_family, bytes, out, (socklen_t)n))
            rc = 0;
    }
    freeaddrinfo(res);
    if (rc < 0)
        snprintf(why, whylen, "%s: %s", host, first[0] ? first : "no usable address");
    return rc;
}
