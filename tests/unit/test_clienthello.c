/*
 * test_clienthello.c - the ClientHello parser and SNI routes: hellos
 * captured here from `openssl s_client` (TLS 1.3 with SNI and ALPN, TLS
 * 1.2 without SNI) and curl, each split at every byte offset (a valid
 * prefix until the last byte, whole after it) and re-cut into 1-byte
 * records; built hellos of 16 KiB and more spanning records, GREASE and
 * ECH values, no extensions; garbage, an SSLv2-compatible hello, and
 * every refusal with its reason, which more bytes never change.
 */
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clienthello.h"
#include "t.h"

#define CAP_MAX	(64 * 1024)

struct bytes {
	uint8_t	*p;
	size_t	 n;
};

static void
put(struct bytes *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->n + n);
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void
put8(struct bytes *b, unsigned v)
{
	uint8_t	 c = (uint8_t)v;

	put(b, &c, 1);
}

static void
put16(struct bytes *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v);
}

static void
put_ext(struct bytes *b, unsigned type, const struct bytes *data)
{
	put16(b, type);
	put16(b, (unsigned)data->n);
	put(b, data->p, data->n);
}

static void
ext_sni(struct bytes *e, const char *name)
{
	struct bytes	 d = { 0 };
	size_t		 n = strlen(name);

	put16(&d, (unsigned)n + 3);
	put8(&d, 0);
	put16(&d, (unsigned)n);
	put(&d, name, n);
	put_ext(e, 0, &d);
	free(d.p);
}

static void
ext_raw(struct bytes *e, unsigned type, const void *p, size_t n)
{
	struct bytes	 d = { 0 };

	put(&d, p, n);
	put_ext(e, type, &d);
	free(d.p);
}

/* A ClientHello handshake message (header included) with extensions
   block exts (NULL: none at all). */
static struct bytes
hello(const struct bytes *exts)
{
	struct bytes	 body = { 0 }, m = { 0 };
	uint8_t		 random[32];

	memset(random, 0x5a, sizeof(random));
	put16(&body, 0x0303);
	put(&body, random, 32);
	put8(&body, 0);
	put16(&body, 4);
	put16(&body, 0x1301);
	put16(&body, 0xc02f);
	put8(&body, 1);
	put8(&body, 0);
	if (exts != NULL) {
		put16(&body, (unsigned)exts->n);
		put(&body, exts->p, exts->n);
	}
	put8(&m, 1);
	put8(&m, (unsigned)(body.n >> 16));
	put16(&m, (unsigned)body.n);
	put(&m, body.p, body.n);
	free(body.p);
	return m;
}

/* The message cut into records of at most rmax bytes each. */
static struct bytes
records(const struct bytes *m, size_t rmax)
{
	struct bytes	 r = { 0 };
	size_t		 off, k;

	for (off = 0; off < m->n; off += k) {
		k = m->n - off < rmax ? m->n - off : rmax;
		put8(&r, 22);
		put16(&r, 0x0301);
		put16(&r, (unsigned)k);
		put(&r, m->p + off, k);
	}
	return r;
}

/* The handshake bytes of a capture (records' headers dropped). */
static struct bytes
unrecord(const struct bytes *c, size_t upto)
{
	struct bytes	 m = { 0 };
	size_t		 off = 0, k;

	while (off + 5 <= upto) {
		k = (size_t)c->p[off + 3] << 8 | c->p[off + 4];
		put(&m, c->p + off + 5, k);
		off += 5 + k;
	}
	return m;
}

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Run argv (with "%PORT%" replaced) against a listener on 127.0.0.1 and
 * return the bytes it sends until they hold a ClientHello (5 s deadline).
 */
static struct bytes
capture(const char *const *argv)
{
	struct sockaddr_in	 sin;
	socklen_t		 sl = sizeof(sin);
	struct bytes		 b = { 0 };
	struct clienthello	 ch;
	const char		*why;
	char			*av[16], port[64];
	uint8_t			 buf[4096];
	double			 deadline;
	pid_t			 pid;
	int			 l, c = -1, i, st, nul;
	ssize_t			 n;

	l = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(l, 1) == -1 ||
	    getsockname(l, (struct sockaddr *)&sin, &sl) == -1)
		abort();
	for (i = 0; argv[i] != NULL && i < 15; i++) {
		const char	*p = strstr(argv[i], "%PORT%");

		if (p == NULL) {
			av[i] = strdup(argv[i]);
			continue;
		}
		snprintf(port, sizeof(port), "%.*s%u%s", (int)(p - argv[i]),
		    argv[i], ntohs(sin.sin_port), p + 6);
		av[i] = strdup(port);
	}
	av[i] = NULL;
	if ((pid = fork()) == 0) {
		nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		execvp(av[0], av);
		_exit(127);
	}
	deadline = now() + 5;
	while (now() < deadline) {
		struct pollfd	 pfd = { c == -1 ? l : c, POLLIN, 0 };

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		if (c == -1) {
			c = accept(l, NULL, NULL);
			continue;
		}
		if ((n = read(c, buf, sizeof(buf))) <= 0)
			break;
		put(&b, buf, (size_t)n);
		if (clienthello_parse(b.p, b.n, &ch, &why) !=
		    CLIENTHELLO_NEED_MORE)
			break;
	}
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	if (c != -1)
		close(c);
	close(l);
	for (i = 0; av[i] != NULL; i++)
		free(av[i]);
	return b;
}

/* Every proper prefix asks for more; the whole answers OK. */
static int
every_prefix(const struct bytes *b, size_t step)
{
	struct clienthello	 ch;
	const char		*why;
	size_t			 k;

	for (k = 0; k < b->n; k += step)
		if (clienthello_parse(b->p, k, &ch, &why) !=
		    CLIENTHELLO_NEED_MORE)
			return 0;
	if (clienthello_parse(b->p, b->n - 1, &ch, &why) !=
	    CLIENTHELLO_NEED_MORE)
		return 0;
	return clienthello_parse(b->p, b->n, &ch, &why) == CLIENTHELLO_OK;
}

static int
alpn_has(const struct clienthello *ch, const char *proto)
{
	size_t	 off, n = strlen(proto);

	for (off = 0; off < ch->alpn_len; off += 1 + ch->alpn[off])
		if (ch->alpn[off] == n && memcmp(ch->alpn + off + 1, proto,
		    n) == 0)
			return 1;
	return 0;
}

/* The captured or built hello, plus junk, gives ch; its re-cut into
   1-byte records gives the same answer. */
static enum clienthello_verdict
parse(const struct bytes *b, struct clienthello *ch, const char **why)
{
	return clienthello_parse(b->p, b->n, ch, why);
}

static void
test_captured(void)
{
	const char *const s13[] = { "openssl", "s_client", "-connect",
	    "127.0.0.1:%PORT%", "-servername", "www.Example.com",
	    "-alpn", "h2,http/1.1", "-tls1_3", NULL };
	const char *const s12[] = { "openssl", "s_client", "-connect",
	    "127.0.0.1:%PORT%", "-noservername", "-tls1_2", NULL };
	const char *const curl[] = { "curl", "-sk", "--max-time", "3",
	    "--resolve", "api.test:%PORT%:127.0.0.1",
	    "https://api.test:%PORT%/", NULL };
	struct clienthello	 ch, ch2;
	struct bytes		 b, m, r1, junk = { 0 };
	const char		*why;
	enum clienthello_verdict v;

	b = capture(s13);
	v = parse(&b, &ch, &why);
	ok(v == CLIENTHELLO_OK, "s_client TLS 1.3 hello "
	    "parsed (%zu bytes)", b.n);
	ok(ch.has_sni && strcmp(ch.sni, "www.Example.com") == 0,
	    "s_client SNI as sent: %s", ch.sni);
	ok(ch.alpn_count == 2 && alpn_has(&ch, "h2") &&
	    alpn_has(&ch, "http/1.1"), "s_client ALPN h2, http/1.1");
	is_int(ch.version, 0x0304, "s_client -tls1_3 offers 1.3");
	is_int(ch.legacy_version, 0x0303, "legacy_version 1.2");
	is_int(ch.len, b.n, "len covers the records");
	ok(strcmp(clienthello_version_name(ch.version), "TLSv1.3") == 0,
	    "version name");
	ok(every_prefix(&b, 1), "s_client hello split at every byte offset");
	m = unrecord(&b, b.n);
	r1 = records(&m, 1);
	ok(parse(&r1, &ch2, &why) == CLIENTHELLO_OK && ch2.has_sni &&
	    strcmp(ch2.sni, ch.sni) == 0 && ch2.alpn_count == 2,
	    "same hello in %zu 1-byte records", m.n);
	ok(every_prefix(&r1, 1), "1-byte records split at every offset");
	put(&junk, b.p, b.n);
	put(&junk, "\x14\x03\x03\x00\x01\x01garbage", 13);
	ok(parse(&junk, &ch2, &why) == CLIENTHELLO_OK && ch2.len == b.n,
	    "bytes after the hello do not matter; len stops at it");
	free(b.p);
	free(m.p);
	free(r1.p);
	free(junk.p);

	b = capture(s12);
	ok(parse(&b, &ch, &why) == CLIENTHELLO_OK, "s_client TLS 1.2 hello "
	    "parsed (%zu bytes)", b.n);
	ok(!ch.has_sni && ch.sni_len == 0, "-noservername: no SNI");
	ok(!ch.has_alpn, "no ALPN offered");
	is_int(ch.version, 0x0303, "-tls1_2 offers at most 1.2");
	ok(every_prefix(&b, 1), "TLS 1.2 hello split at every byte offset");
	free(b.p);

	b = capture(curl);
	ok(parse(&b, &ch, &why) == CLIENTHELLO_OK, "curl hello parsed "
	    "(%zu bytes)", b.n);
	ok(ch.has_sni && strcmp(ch.sni, "api.test") == 0, "curl SNI");
	ok(alpn_has(&ch, "http/1.1") && ch.alpn_count >= 1,
	    "curl ALPN offers http/1.1 (%d protocols)", ch.alpn_count);
	is_int(ch.version, 0x0304, "curl offers 1.3");
	ok(every_prefix(&b, 1), "curl hello split at every byte offset");
	free(b.p);
}

static void
test_built(void)
{
	struct clienthello	 ch;
	struct bytes		 e = { 0 }, m, r, r1;
	const char		*why;
	uint8_t			*pad;
	static const uint8_t	 sv[] = { 8, 0x3a, 0x3a, 0x03, 0x04,
	    0x03, 0x03, 0x7f, 0x1c };
	static const uint8_t	 alpn[] = { 0, 12, 2, 'h', '2', 8, 'h', 't',
	    't', 'p', '/', '1', '.', '1' };

	/* GREASE extension first, ECH, GREASE and an unknown draft
	   version in supported_versions, a 16 KiB padding extension. */
	ext_raw(&e, 0x0a0a, "", 0);
	ext_sni(&e, "public.example.");
	ext_raw(&e, 0x0010, alpn, sizeof(alpn));
	ext_raw(&e, 0x002b, sv, sizeof(sv));
	ext_raw(&e, 0xfe0d, "\x00\x00\x01\x00\x01\x2a", 6);
	pad = calloc(1, 16 * 1024);
	ext_raw(&e, 0x0015, pad, 16 * 1024);
	free(pad);
	m = hello(&e);
	r = records(&m, CLIENTHELLO_RECORD_MAX);
	ok(parse(&r, &ch, &why) == CLIENTHELLO_OK, "16 KiB hello in %zu "
	    "bytes of 2 records", r.n);
	ok(ch.has_sni && strcmp(ch.sni, "public.example.") == 0 &&
	    ch.has_ech, "SNI (outer name) and ECH seen");
	is_int(ch.nversions, 3, "GREASE left out of supported_versions");
	is_int(ch.version, 0x0304, "highest known version, drafts ignored");
	ok(alpn_has(&ch, "h2") && alpn_has(&ch, "http/1.1"), "ALPN");
	ok(every_prefix(&r, 1), "16 KiB hello split at every byte offset");
	r1 = records(&m, 1);
	ok(parse(&r1, &ch, &why) == CLIENTHELLO_OK && ch.has_sni &&
	    ch.len == r1.n, "16 KiB hello in %zu 1-byte records", m.n);
	ok(every_prefix(&r1, 97), "1-byte records, every 97th prefix");
	free(r.p);
	free(r1.p);
	free(m.p);

	m = hello(NULL);
	r = records(&m, 1000);
	ok(parse(&r, &ch, &why) == CLIENTHELLO_OK && !ch.has_sni &&
	    ch.version == 0x0303, "no extensions at all: OK, no SNI");
	free(r.p);
	free(m.p);
	free(e.p);

	/* An ALPN list over the limit keeps whole entries. */
	{
		struct bytes	 a = { 0 }, x = { 0 };
		enum clienthello_verdict v;
		int		 i;

		put16(&a, 200 * 5);
		for (i = 0; i < 200; i++)
			put(&a, "\x04spdy", 5);
		put_ext(&x, 0x0010, &a);
		m = hello(&x);
		r = records(&m, 16384);
		v = parse(&r, &ch, &why);
		ok(v == CLIENTHELLO_OK &&
		    ch.alpn_truncated && ch.alpn_count == 102 &&
		    ch.alpn_len == 510, "long ALPN list truncated to whole "
		    "entries (%d)", ch.alpn_count);
		free(a.p);
		free(x.p);
		free(m.p);
		free(r.p);
	}
}

/* Refused with a reason, and still refused whatever follows. */
static void
refused(const void *p, size_t n, enum clienthello_verdict want,
    const char *name, const char *reason)
{
	struct clienthello	 ch;
	struct bytes		 b = { 0 };
	const char		*why = NULL, *why2 = NULL;
	enum clienthello_verdict v;

	put(&b, p, n);
	v = clienthello_parse(b.p, b.n, &ch, &why);
	put(&b, "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10);
	ok(v == want && why != NULL && strstr(why, reason) != NULL &&
	    clienthello_parse(b.p, b.n, &ch, &why2) == want, "%s: %s", name,
	    why ? why : "(no reason)");
	free(b.p);
}

static void
refuse_ext(unsigned type, const void *data, size_t n, const char *name,
    const char *reason)
{
	struct bytes	 e = { 0 }, m, r;

	ext_raw(&e, type, data, n);
	m = hello(&e);
	r = records(&m, 16384);
	refused(r.p, r.n, CLIENTHELLO_MALFORMED, name, reason);
	free(e.p);
	free(m.p);
	free(r.p);
}

static void
test_refusals(void)
{
	static const uint8_t sslv2[] = { 0x80, 0x2e, 0x01, 0x03, 0x01,
	    0x00, 0x15, 0x00, 0x00, 0x00, 0x10 };
	struct clienthello	 ch;
	struct bytes		 e = { 0 }, m, r;
	const char		*why;

	refused("GET / HTTP/1.1\r\n", 16, CLIENTHELLO_NOT_TLS, "HTTP",
	    "not a TLS handshake record");
	refused("G", 1, CLIENTHELLO_NOT_TLS, "first byte of HTTP",
	    "not a TLS handshake record");
	refused("SSH-2.0-x\r\n", 11, CLIENTHELLO_NOT_TLS, "SSH banner",
	    "not a TLS handshake record");
	refused(sslv2, sizeof(sslv2), CLIENTHELLO_NOT_TLS, "SSLv2 hello",
	    "SSLv2");
	refused("\x16\x02", 2, CLIENTHELLO_NOT_TLS, "record major 2",
	    "record version");
	refused("\x16\x03\x09", 3, CLIENTHELLO_NOT_TLS, "record minor 9",
	    "record version");
	refused("\x17\x03\x03\x00\x10", 5, CLIENTHELLO_NOT_TLS,
	    "application data first", "not a TLS handshake record");
	refused("\x16\x03\x01\x00\x00", 5, CLIENTHELLO_MALFORMED,
	    "empty record", "empty handshake record");
	refused("\x16\x03\x01\x40\x01", 5, CLIENTHELLO_MALFORMED,
	    "16385-byte record", "longer than 16384");
	refused("\x16\x03\x01\x00\x04\x02", 6, CLIENTHELLO_MALFORMED,
	    "ServerHello", "not a ClientHello");
	refused("\x16\x03\x01\x00\x04\x01\x00\x00\x10", 9,
	    CLIENTHELLO_MALFORMED, "hello of 16 bytes", "shorter than its");
	refused("\x16\x03\x01\x00\x04\x01\x01\x00\x01", 9,
	    CLIENTHELLO_MALFORMED, "hello of 64 KiB + 1", "longer than 65536");
	refused("\x16\x03\x01\x00\x01\x01\x15\x03\x01\x00\x02", 11,
	    CLIENTHELLO_MALFORMED, "alert record inside the hello",
	    "another type");

	refuse_ext(0, "\x00\x06\x00\x00\x03" "a\0b", 8, "NUL in SNI",
	    "not a host name");
	refuse_ext(0, "\x00\x06\x00\x00\x03" "a..", 8, "empty label",
	    "not a host name");
	refuse_ext(0, "\x00\x06\x00\x00\x03" "a\xc3" "b", 8, "8-bit SNI",
	    "not a host name");
	refuse_ext(0, "\x00\x00", 2, "empty server_name list",
	    "list length wrong");
	refuse_ext(0, "\x00\x09\x00\x00\x03" "abc", 8, "server_name list "
	    "overrun", "list length wrong");
	refuse_ext(0, "\x00\x06\x00\x00\x04" "abc", 8, "host name overruns "
	    "its list", "overruns its list");
	refuse_ext(0, "\x00\x0c\x00\x00\x03" "abc\x00\x00\x03" "def", 14,
	    "two host names", "two host names");
	refuse_ext(16, "\x00\x03\x00\x01\x61", 5, "empty ALPN entry",
	    "ALPN entry empty");
	refuse_ext(16, "\x00\x03\x05h2", 5, "ALPN entry overrun",
	    "ALPN entry empty or overrunning");
	refuse_ext(43, "\x03\x03\x04\x03", 4, "odd supported_versions",
	    "supported_versions length wrong");
	refuse_ext(43, "\x02\x0a\x0a", 3, "only GREASE versions",
	    "only GREASE");

	ext_sni(&e, "a.example");
	ext_sni(&e, "b.example");
	m = hello(&e);
	r = records(&m, 16384);
	refused(r.p, r.n, CLIENTHELLO_MALFORMED, "server_name twice",
	    "sent twice");
	free(r.p);
	/* Cut one byte off the message but not off its length field. */
	r = records(&m, 16384);
	r.p[4]--;
	r.n--;
	ok(clienthello_parse(r.p, r.n, &ch, &why) == CLIENTHELLO_NEED_MORE,
	    "record shorter than the hello: needs more");
	free(r.p);
	/* Extensions length one byte short of the body. */
	m.p[4 + 2 + 32 + 1 + 2 + 4 + 2 + 1]--;
	r = records(&m, 16384);
	refused(r.p, r.n, CLIENTHELLO_MALFORMED, "extensions short of the "
	    "body", "does not fill");
	free(r.p);
	free(m.p);
	free(e.p);
	ok(clienthello_parse((const uint8_t *)"", 0, &ch, &why) ==
	    CLIENTHELLO_NEED_MORE, "nothing yet: needs more");
}

static void
test_routes(void)
{
	static const char *const pats[] = { "api.example.com",
	    "*.api.example.com", "*.Example.COM.", "exact.other", NULL };
	struct clienthello_route	 r[4], bad;
	const char			*why;
	int				 i, n = 0, r_;

	for (i = 0; pats[i] != NULL; i++)
		n += clienthello_route_parse(pats[i], &r[i], &why) == 0;
	is_int(n, 4, "four patterns parsed");
	is_int(clienthello_route_match(r, 4, "api.example.com", 15), 0,
	    "exact name, before the wildcard that also fits");
	is_int(clienthello_route_match(r, 4, "API.Example.Com.", 16), 0,
	    "case and trailing dot ignored");
	is_int(clienthello_route_match(r, 4, "v1.api.example.com", 18), 1,
	    "*.api.example.com");
	is_int(clienthello_route_match(r, 4, "a.b.example.com", 15), 2,
	    "*.example.com, any depth");
	is_int(clienthello_route_match(r, 4, "example.com", 11), -1,
	    "*.example.com does not take example.com");
	is_int(clienthello_route_match(r, 4, "xexample.com", 12), -1,
	    "suffix on a label boundary only");
	is_int(clienthello_route_match(r, 4, "exact.other", 11), 3, "exact");
	is_int(clienthello_route_match(r, 4, "other", 5), -1, "no match");
	is_int(clienthello_route_match(r, 4, "", 0), -1, "no SNI: no match");
	is_int(clienthello_route_match(r, 4, ".", 1), -1, "lone dot");
	r_ = clienthello_route_parse("", &bad, &why);
	ok(r_ == -1, "empty: %s", why);
	r_ = clienthello_route_parse("*", &bad, &why);
	ok(r_ == -1, "'*': %s", why);
	r_ = clienthello_route_parse("*.", &bad, &why);
	ok(r_ == -1, "'*.': %s", why);
	r_ = clienthello_route_parse("a.*.com", &bad, &why);
	ok(r_ == -1, "inner '*': %s", why);
	r_ = clienthello_route_parse("*a.com", &bad, &why);
	ok(r_ == -1, "'*a.com': %s", why);
	r_ = clienthello_route_parse("a b.com", &bad, &why);
	ok(r_ == -1, "space: %s", why);
	r_ = clienthello_route_parse("a..com", &bad, &why);
	ok(r_ == -1, "empty label: %s", why);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_captured();
	test_built();
	test_refusals();
	test_routes();
	return done_testing();
}
