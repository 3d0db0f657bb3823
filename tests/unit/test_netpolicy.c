/* The outbound policy's rules: CIDR matching for IPv4 and IPv6 at any prefix length, the
 * built-in link-local and private ranges, allow winning over deny, and bad rules refused. */
#include "core/netpolicy.h"
#include "t.h"

#include <string.h>

static int denied(const char *host)
{
    char why[200];
    return sl_netpolicy_denied_host(host, why, sizeof(why));
}

int main(void)
{
    char err[200];
    T_CHECK(sl_netpolicy_set(0, "", "", err, sizeof(err)) == 0, "the defaults load");
    T_CHECK(denied("169.254.169.254") && denied("169.254.0.1") && denied("[fe80::1]") &&
                denied("fe80::abcd"),
            "link-local v4 and v6 are denied by default");
    T_CHECK(!denied("10.0.0.1") && !denied("127.0.0.1") && !denied("8.8.8.8") &&
                !denied("example.com") && !denied("169.255.0.1"),
            "private, loopback, public and names are not (a name is checked when it resolves)");
    T_CHECK(sl_netpolicy_set(1, "10.1.0.0/16", "203.0.113.7,2001:db8::/33", err, sizeof(err)) == 0,
            "deny_private with an allow and a deny list");
    T_CHECK(denied("10.2.0.1") && !denied("10.1.200.3") && denied("127.0.0.1") &&
                denied("192.168.1.1") && denied("172.31.255.255") && !denied("172.32.0.1") &&
                denied("[::1]") && denied("fd00::1") && denied("100.64.0.1"),
            "private ranges denied, the allowed /16 open again, edges of 172.16/12 right");
    T_CHECK(denied("203.0.113.7") && !denied("203.0.113.8") && denied("2001:db8:7fff::1") &&
                !denied("2001:db8:8000::1"),
            "a /32 host and an odd IPv6 prefix (/33) match exactly");
    char why[200];
    T_CHECK(sl_netpolicy_denied_host("169.254.169.254", why, sizeof(why)) &&
                strstr(why, "169.254.0.0/16"),
            "the reason names the rule (%s)", why);
    T_CHECK(sl_netpolicy_set(0, "", "10.0.0.0/33", err, sizeof(err)) < 0 &&
                strstr(err, "outbound_deny") && strstr(err, "10.0.0.0/33"),
            "a bad prefix length is refused naming the option (%s)", err);
    T_CHECK(sl_netpolicy_set(0, "nonsense", "", err, sizeof(err)) < 0 &&
                strstr(err, "outbound_allow"),
            "a non-address is refused (%s)", err);
    return T_DONE();
}
