/*
 * test_resolve.c - resolve.c: every address of a name, on a libev loop.
 *
 * Names come from a hosts file (CARES_HOSTS), so no DNS question leaves
 * the machine (a name that fails would ask the host's DNS servers: that
 * case is in tests/integration/test_announce.py, with a resolv.conf that
 * points at loopback).
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "resolve.h"
#include "t.h"

struct answer {
	int			 calls;
	size_t			 n;
	struct sockaddr_storage	 addrs[RESOLVE_ADDRS_MAX];
	char			 err[128];
};

static void
got(void *arg, const char *name, const struct sockaddr_storage *addrs,
    size_t n, const char *err)
{
	struct answer *a = arg;

	(void)name;
	a->calls++;
	a->n = n;
	if (n > 0)
		memcpy(a->addrs, addrs, n * sizeof(addrs[0]));
	snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
}

static void
run_until(struct ev_loop *loop, struct resolver *r)
{
	for (int i = 0; i < 500 && resolver_pending(r) > 0; i++)
		ev_run(loop, EVRUN_ONCE);
}

static int
has(const struct answer *a, int fam, const char *ip, unsigned short port)
{
	char buf[INET6_ADDRSTRLEN];

	for (size_t i = 0; i < a->n; i++) {
		const struct sockaddr_storage *ss = &a->addrs[i];

		if (ss->ss_family != fam)
			continue;
		if (fam == AF_INET) {
			const struct sockaddr_in *s = (const void *)ss;

			inet_ntop(AF_INET, &s->sin_addr, buf, sizeof(buf));
			if (strcmp(buf, ip) == 0 && ntohs(s->sin_port) == port)
				return 1;
		} else {
			const struct sockaddr_in6 *s = (const void *)ss;

			inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof(buf));
			if (strcmp(buf, ip) == 0 && ntohs(s->sin6_port) == port)
				return 1;
		}
	}
	return 0;
}

int
main(void)
{
	char		 hosts[] = "/tmp/shoal-test-hosts-XXXXXX";
	struct ev_loop	*loop = ev_loop_new(EVFLAG_AUTO);
	struct resolver	*r;
	struct answer	 a;
	FILE		*f;
	int		 fd;

	if ((fd = mkstemp(hosts)) == -1 || (f = fdopen(fd, "w")) == NULL)
		return 1;
	fprintf(f, "127.0.0.1 localhost\n"
	    "192.0.2.1 two.test\n"
	    "192.0.2.2 two.test other.test\n"
	    "2001:db8::1 two.test\n"
	    "192.0.2.1 two.test\n");
	fclose(f);
	setenv("CARES_HOSTS", hosts, 1);

	r = resolver_new(loop);
	ok(r != NULL, "resolver_new");

	memset(&a, 0, sizeof(a));
	ok(resolver_start(r, "two.test", AF_UNSPEC, 7466, got, &a) == 0,
	    "start two.test");
	run_until(loop, r);
	is_int(a.calls, 1, "one answer");
	is_int(a.n, 3, "every A and AAAA address, the duplicate once");
	ok(has(&a, AF_INET, "192.0.2.1", 7466) &&
	    has(&a, AF_INET, "192.0.2.2", 7466), "both IPv4 addresses, port set");
	ok(has(&a, AF_INET6, "2001:db8::1", 7466), "the IPv6 address");

	memset(&a, 0, sizeof(a));
	resolver_start(r, "two.test", AF_INET, 1, got, &a);
	run_until(loop, r);
	is_int(a.n, 2, "AF_INET: only the IPv4 addresses");

	memset(&a, 0, sizeof(a));
	resolver_start(r, "192.0.2.9", AF_UNSPEC, 80, got, &a);
	run_until(loop, r);
	ok(a.n == 1 && has(&a, AF_INET, "192.0.2.9", 80), "a numeric address");

	is_int(resolver_pending(r), 0, "nothing pending");

	resolver_free(r);
	resolver_free(NULL);
	ev_loop_destroy(loop);
	unlink(hosts);
	return done_testing();
}
